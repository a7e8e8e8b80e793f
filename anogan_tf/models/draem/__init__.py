"""DRAEM (Zavrtanik, Kristan and Skocaj, "DRAEM - A discriminatively trained reconstruction
embedding for surface anomaly detection", ICCV 2021; the authors' code, github.com/VitjanZ/DRAEM):
a family member that learns what a defect looks like, from simulated ones.

Training (per batch): anomalies are pasted into the normal pictures inside Perlin-noise masks
(synthesis.py: sources are the training pictures themselves and synthetic textures, never other
photographs); the reconstructive network repaints the altered picture as the original, the
discriminative network takes the altered picture beside its repainting and segments the pasted
region. One Adam over both networks on the authors' loss

  loss = L2(repainting, original) + (1 - SSIM(repainting, original)) + focal(segmentation, mask)

with the L2 (mean squared error) and SSIM (11x11 Gaussian window, sigma 1.5) on pictures scaled to
[0, 1] as the authors', and the focal loss with gamma --draem_focal_gamma (the authors: 2) over
every pixel's 2-class softmax.

Scoring: residual_map = the predicted anomaly probability per pixel (broadcast to the picture's
channels), the segmentation itself, not |x - reconstruction|; the image score = the maximum of that
map averaged over a window of --draem_score_window pixels (the authors: 21 x 21 at 256 pixels; 0:
scaled to the image size, 5 at 64). With --draem_score_shifts=s (not the authors') the map is the
mean of five: the picture's and those of four copies shifted by (s, s), (-s, -s), (s, -s), (-s, s)
pixels (reflected at the borders), each shifted back. With --draem_score_top=q (not the authors') the
image score is the mean of the top q share of that (window-averaged) map's pixels, not its single
maximum. `reconstruction` is the repainting, clipped to [-1, 1].
"""

from __future__ import annotations

from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

import anogan_tf.models.base as base
from anogan_tf.config.checks import check_number, need
from anogan_tf.errors import AnoganError
from anogan_tf.models.draem.networks import DiscriminativeNetwork, ReconstructiveNetwork, pools_for
from anogan_tf.models.draem.synthesis import Synthesis
from anogan_tf.nn import losses

NAME = "draem"
NETWORKS = ("reconstructive", "discriminative")
RECONSTRUCTIVE_BOTTOM = 16  # the authors' reconstructive network pools 256 pixels down to 16
DISCRIMINATIVE_BOTTOM = 8  # and the discriminative one down to 8
AUTHORS_SIDE, AUTHORS_WINDOW = 256, 21  # the authors' image score: 21 x 21 mean filter at 256 pixels
SSIM_WINDOW = 11


def make_synthesis(config) -> Synthesis:
  return Synthesis(side=config.image_side, channels=config.image_shape[-1],
                   anomaly_fraction=config.draem_anomaly_fraction, texture_fraction=config.draem_texture_fraction,
                   threshold=config.draem_perlin_threshold, beta_max=config.draem_beta_max,
                   min_cell=config.draem_perlin_min_cell, smooth_fraction=config.draem_smooth_fraction,
                   scar_fraction=config.draem_scar_fraction, rotate_fraction=config.draem_rotate_fraction,
                   flat_fraction=config.draem_flat_fraction, dihedral_fraction=config.draem_dihedral_fraction)


def score_window(config) -> int:
  """--draem_score_window, or (0) the authors' 21 pixels at 256 scaled to the image size, odd."""
  if config.draem_score_window:
    return int(config.draem_score_window)
  window = max(1, int(round(AUTHORS_WINDOW * config.image_side / AUTHORS_SIDE)))
  return window + 1 - window % 2


def check_config(config) -> None:
  """DRAEM's settings: checked in every Config, whatever --model (their defaults are valid)."""
  number = lambda name, low, high=None, **kw: check_number(config, name, low, high, **kw)  # noqa: E731
  need(config.draem_width >= 1, f"--draem_width={config.draem_width} is below 1; use e.g. 16 (channels of the "
                                "networks' first level)")
  need(config.draem_seg_width >= 0, f"--draem_seg_width={config.draem_seg_width} is negative; use 0 (= "
                                    "--draem_width) or a width")
  number("draem_anomaly_fraction", 0.0, 1.0, high_open=False, fix="use a share of the pictures, e.g. 0.5")
  number("draem_texture_fraction", 0.0, 1.0, high_open=False, fix="use a share of the anomalies, e.g. 0.5")
  number("draem_smooth_fraction", 0.0, 1.0, high_open=False, fix="use a share of the anomalies, e.g. 0.3, or 0")
  number("draem_scar_fraction", 0.0, 1.0, high_open=False, fix="use a share of the anomalies, e.g. 0.3, or 0")
  number("draem_flat_fraction", 0.0, 1.0, high_open=False, fix="use a share of the anomalies, e.g. 0.3, or 0")
  number("draem_rotate_fraction", 0.0, 1.0, high_open=False, fix="use a share of the pictures, e.g. 0.3, or 0")
  number("draem_dihedral_fraction", 0.0, 1.0, high_open=False, fix="use a share of the pictures, e.g. 1, or 0")
  number("draem_perlin_threshold", -1.0, 1.0, low_open=True, fix="use e.g. 0.5 (the authors')")
  number("draem_beta_max", 0.0, 1.0, fix="use e.g. 0.8 (the authors')")
  number("draem_focal_gamma", 0.0, fix="use e.g. 2 (the authors')")
  cell = config.draem_perlin_min_cell
  need(cell >= 1 and cell & (cell - 1) == 0, f"--draem_perlin_min_cell={cell} is not a power of two; use e.g. 8")
  need(config.draem_score_window >= 0 and (config.draem_score_window == 0 or config.draem_score_window % 2 == 1),
       f"--draem_score_window={config.draem_score_window} is not an odd size; use 0 (scaled to the image) or e.g. 5")
  number("draem_score_top", 0.0, 1.0, high_open=False, fix="use a share of the pixels, e.g. 0.01, or 0 (the max)")
  need(config.draem_score_shifts >= 0, f"--draem_score_shifts={config.draem_score_shifts} is negative; use 0 (the "
                                       "picture alone) or a few pixels, e.g. 2")


# --- networks

def build_networks(config) -> Dict[str, keras.Model]:
  """{"reconstructive": altered picture -> repainting, "discriminative": (picture, repainting) ->
  2-class logits per pixel}; poolings from the image size (networks.pools_for)."""
  shape, side = config.image_shape, config.image_side
  return {"reconstructive": ReconstructiveNetwork(shape, width=config.draem_width,
                                                  pools=pools_for(side, RECONSTRUCTIVE_BOTTOM),
                                                  bn_momentum=config.bn_momentum, name="reconstructive"),
          "discriminative": DiscriminativeNetwork(shape, width=config.draem_seg_width or config.draem_width,
                                                  pools=pools_for(side, DISCRIMINATIVE_BOTTOM),
                                                  bn_momentum=config.bn_momentum, name="discriminative")}


def noise(rng: np.random.Generator, n: int, config) -> np.ndarray:
  """(n, k) uniform numbers in [0, 1), one row per training picture: its simulated anomaly
  (synthesis.Synthesis.simulate), drawn from the epoch's seeded generator."""
  return make_synthesis(config).noise(rng, n)


def sample(networks, noise) -> None:
  """No prior to sample from: no sample grid."""
  return None


# --- losses

def focal_loss(logits, mask, gamma: float):
  """The authors' focal loss (after Lin et al. 2017): the mean over pixels of -(1 - p_t)^gamma
  log p_t, p_t the softmax probability of the pixel's true class (mask 1: anomalous)."""
  log_p = tf.nn.log_softmax(logits, axis=-1)
  target = tf.concat([1.0 - mask, mask], axis=-1)
  log_pt = tf.reduce_sum(target * log_p, axis=-1)
  pt = tf.exp(log_pt)
  return tf.reduce_mean(-tf.pow(1.0 - pt, gamma) * log_pt)


def reconstruction_losses(x, repainting):
  """(L2, 1 - SSIM): batch means, on pictures scaled from [-1, 1] to [0, 1] as the authors'."""
  a, b = (repainting + 1.0) / 2.0, (x + 1.0) / 2.0
  l2 = tf.reduce_mean(tf.square(a - b))
  size = min(SSIM_WINDOW, int(x.shape[1]), int(x.shape[2]))
  ssim = tf.image.ssim(a, b, max_val=1.0, filter_size=size, filter_sigma=1.5)
  return l2, 1.0 - tf.reduce_mean(ssim)


def anomaly_probability(networks, x, training: bool = False):
  """(repainting, P(anomalous) per pixel (batch, h, w, 1), logits) of pictures x."""
  repainting = networks["reconstructive"](x, training=training)
  logits = networks["discriminative"](tf.concat([tf.clip_by_value(repainting, -1.0, 1.0), x], axis=-1),
                                      training=training)
  return repainting, tf.nn.softmax(logits, axis=-1)[..., 1:], logits


# --- training

class DraemTrainer(base.PhasedAdamTrainer):
  """train_step(x, noise, phase): anomalies simulated from the batch's noise rows, then one Adam
  step over both networks (training mode: BN batch statistics) on L2 + (1 - SSIM) + focal, as the
  authors' train_DRAEM.py (the segmentation's gradient reaches the reconstructive network too).
  Learning-rate phases as every family's (--lr, then a fresh Adam at --lr_after_decay from
  --lr_decay_epoch; the authors divide by 5 at 80% and again at 90% of the epochs)."""

  loss_names = ("loss", "l2", "ssim", "focal")

  def __init__(self, config, networks):
    super().__init__(name="draem_trainer")
    self.config = config
    self.networks = networks
    self.synthesis = make_synthesis(config)
    self.gamma = float(config.draem_focal_gamma)
    self.build_optimizers()

  @property
  def variables_to_train(self) -> list:
    return self.networks["reconstructive"].trainable_variables + self.networks["discriminative"].trainable_variables

  def train_step(self, x, noise, phase: int):
    x = self.synthesis.rotated(x, noise)
    augmented, mask = self.synthesis.simulate(x, noise)
    with tf.GradientTape() as tape:
      repainting, _, logits = anomaly_probability(self.networks, augmented, training=True)
      l2, ssim = reconstruction_losses(x, repainting)
      focal = focal_loss(logits, mask, self.gamma)
      loss = l2 + ssim + focal
    self.apply(tape, loss, phase)
    return {"loss": loss, "l2": l2, "ssim": ssim, "focal": focal}


def make_trainer(config, networks) -> DraemTrainer:
  return DraemTrainer(config, networks)


# --- scoring

class DraemScorer(base.OnePassScorer):
  """score = max over pixels of the anomaly probability averaged over a `window` x `window`
  neighbourhood (the authors' test_DRAEM.py); residual_map = the anomaly probability per pixel,
  on every channel; reconstruction = the repainting clipped to [-1, 1]. Parts: `segmentation`
  (the score before --ink_power) and `reconstruction` (mean |x - repainting|, for reference)."""

  residual_is_error = False

  def __init__(self, networks, window: int, batch_size: int = 0, ink_power: float = 0.0, shifts: int = 0,
               top: float = 0.0):
    if int(window) < 1:
      raise AnoganError(f"score window {window} is below 1; use an odd size such as 5")
    if not 0.0 <= float(top) <= 1.0:
      raise AnoganError(f"--draem_score_top={top} is not a share of the pixels; use e.g. 0.01, or 0 (the max)")
    self.top = float(top)
    self.networks = networks
    self.window = int(window)
    side = min(networks["reconstructive"].image_shape[:2])
    if not 0 <= int(shifts) < side:
      raise AnoganError(f"--draem_score_shifts={shifts} does not fit {side}-pixel pictures; use 0 or a few pixels, "
                        "e.g. 2")
    self.shifts = int(shifts)
    self.ink_power = base.checked_ink_power(ink_power)
    self.example_shape = tuple(networks["reconstructive"].image_shape)
    self.init_chunks(batch_size)

  @property
  def offsets(self) -> tuple:
    """(dy, dx) of each view: the picture, then (with shifts) its four diagonal shifts."""
    s = self.shifts
    return ((0, 0),) + (((s, s), (-s, -s), (s, -s), (-s, s)) if s else ())

  def activation_floats_per_image(self) -> int:
    return len(self.offsets) * sum(network.activation_floats() for network in self.networks.values())

  def settings(self) -> dict:
    # absent at 0: older thresholds still apply
    shifts = {"draem_score_shifts": self.shifts} if self.shifts else {}
    top = {"draem_score_top": self.top} if self.top else {}
    return {"draem_score_window": self.window, **shifts, **top, "map_batch_size": self.batch_size,
            **losses.ink_setting(self.ink_power)}

  def shifted_probability(self, x):
    """(repainting of x, the anomaly map averaged over the views of `offsets`): the pictures moved
    by (dy, dx) (view[i, j] = x[i + dy, j + dx], reflected at the borders), their maps moved back
    (the outermost pixels, which no view saw there, mirrored)."""
    if len(self.offsets) == 1:
      repainting, probability, _ = anomaly_probability(self.networks, x)
      return repainting, probability
    s, (h, w) = self.shifts, x.shape[1:3]
    border = [[0, 0], [s, s], [s, s], [0, 0]]
    padded = tf.pad(x, border, "REFLECT")
    views = tf.concat([padded[:, s + dy:s + dy + h, s + dx:s + dx + w] for dy, dx in self.offsets], axis=0)
    repainting, probability, _ = anomaly_probability(self.networks, views)
    maps = tf.split(tf.pad(probability, border, "SYMMETRIC"), len(self.offsets))
    back = [m[:, s - dy:s - dy + h, s - dx:s - dx + w] for (dy, dx), m in zip(self.offsets, maps)]
    return tf.split(repainting, len(self.offsets))[0], tf.add_n(back) / float(len(back))

  def image_score(self, smoothed):
    """Per picture: the max of the (window-averaged) map, or with `top` the mean of its highest
    ceil(top * pixels) values."""
    if not self.top:
      return tf.reduce_max(smoothed, axis=(1, 2, 3))
    pixels = int(np.prod(smoothed.shape[1:]))
    k = min(pixels, max(1, int(np.ceil(self.top * pixels))))
    return tf.reduce_mean(tf.math.top_k(tf.reshape(smoothed, (-1, pixels)), k=k, sorted=False).values, axis=1)

  def score_tensors(self, x) -> base.ScoreResult:
    repainting, probability = self.shifted_probability(x)
    smoothed = tf.nn.avg_pool2d(probability, self.window, 1, "SAME")
    segmentation = self.image_score(smoothed)
    reconstruction = tf.clip_by_value(repainting, -1.0, 1.0)
    channels = self.example_shape[-1]
    return base.ScoreResult(score=losses.ink_normalised(segmentation, x, self.ink_power),
                            reconstruction=reconstruction,
                            residual_map=tf.repeat(probability, channels, axis=-1) if channels > 1 else probability,
                            parts={"segmentation": segmentation,
                                   "reconstruction": tf.reduce_mean(tf.abs(x - reconstruction), axis=(1, 2, 3))})


def make_scorer(config, networks, batch_size: Optional[int] = None) -> DraemScorer:
  """Overrides: batch_size (default --map_batch_size; 0: from the available memory)."""
  return DraemScorer(networks, score_window(config), batch_size=base.score_batch_size(config, batch_size),
                     ink_power=config.ink_power, shifts=config.draem_score_shifts, top=config.draem_score_top)
