"""Spatio-temporal autoencoder for clips (Chong & Tay 2017, "Abnormal Event Detection in Videos using
Spatiotemporal Autoencoder"; seed 004's "ConvLSTM2D (KERAS)"): score = reconstruction error of a clip.

Examples are clips (N, clip_length, h, w, c) in [-1, 1]. The network (`SpatioTemporalAutoencoder`)
takes windows of `clip_window` frames (Chong & Tay: 10):

  per frame (TimeDistributed): Conv2D(e_filters[i], stride e_strides[i]) + LeakyReLU   (64 -> 16 -> 8 with 4, 2)
  ConvLSTM2D(convlstm_filters[j], 3x3, return_sequences) + LayerNormalization, each j (Chong & Tay: 64, 32, 64)
  per frame: Conv2DTranspose back up the strides in reverse order, the last one to c channels, linear,
             clipped to [-1, 1] (the loss is taken before the clip: see SpatioTemporalAutoencoder)

Kernels follow the strides (2 * stride + 1, Chong & Tay's 11 for stride 4 and 5 for stride 2 at
227 pixels, scaled down to 9 and 5), so each layer sees its whole stride's neighbourhood. The
ConvLSTMs run at the smallest size (h / prod(e_strides)): ConvLSTM2D has no fused CPU kernel, its
cost grows with that area.

Each ConvLSTM2D's output is layer-normalised (over its channels, per place and frame), as the
common Keras versions of this network do: without it the three stacked ConvLSTMs, whose outputs
o * tanh(c) start small, pass the decoder too little of the frame, and the autoencoder sits at a
blurred blob where the digits are (a loss just below that of an empty reconstruction) for hundreds
of steps; with it the digits come out within a few hundred steps.

Training: each step takes one window per clip, its start drawn by the driver's noise (`noise`: a
uniform u per clip, start = floor(u * (clip_length - clip_window + 1))), so epochs see every
offset and a resumed run draws what an uninterrupted one draws. Loss: `--recon_loss` summed over a
window's pixels (as the `ae` family's per image), averaged over the batch.

Scoring a clip: windows start every ceil(clip_window / 2) frames, plus one ending at the clip's
last frame; each frame's reconstruction is the mean of the windows' reconstructions that hold
it. Per frame t the error e(t) = sum over the frame's pixels of |x - x'| (l1) or (x - x')^2 (l2);
then (Chong & Tay's regularity score) s(t) = 1 - (e(t) - min e) / (max e - min e) over the clip.
  score           the clip's mean e(t) (a mean, so clips of any length compare per frame)
  extras          frame_scores: e(t) (N, clip_length), the per-frame anomaly score that evaluate's
                  frame-level AUROC ranks (raw errors: comparable across clips, unlike s(t));
                  regularity: s(t) (N, clip_length), 1 = the clip's most regular frame
  residual_map    |x - x'| per frame (N, clip_length, h, w, c)
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

import anogan_tf.models.base as base
from anogan_tf.errors import AnoganError
from anogan_tf.nn import losses, memory
from anogan_tf.nn.precision import to_float32

NAME = "convlstm_ae"
EXAMPLES = "clips"  # the registry lets it train on clip datasets only (moving_mnist, frames)
NETWORKS = ("autoencoder",)
RECON_LOSSES = ("l1", "l2")


def example_shape(config):
  """(clip_length, h, w, c): one clip."""
  return (config.clip_length,) + tuple(config.image_shape)


def check_config(config) -> None:
  if config.model != NAME:
    return
  if config.clip_window > config.clip_length:
    raise AnoganError(f"--clip_window={config.clip_window} is longer than --clip_length={config.clip_length}; "
                      "use a window of at most the clip's frames")
  if not config.convlstm_filters:
    raise AnoganError("--convlstm_filters is empty; give one filter count per ConvLSTM2D layer, e.g. 64,32,64")
  reduction = math.prod(config.e_strides)
  if config.image_side % reduction:
    raise AnoganError(f"--image_size={config.image_side} is not divisible by the product of --e_strides "
                      f"({reduction}); use strides whose product divides the frame size, e.g. 4,2 for 64")


# --- the network

@keras.saving.register_keras_serializable(package="anogan_tf")
class SpatioTemporalAutoencoder(keras.Model):
  """Windows (N, T, h, w, c) in [-1, 1] -> reconstructions (N, T, h, w, c) in [-1, 1]; any T.
  Each ConvLSTM2D is followed by a LayerNormalization (see the module's docstring).

  The per-frame layers run on the N * T frames as one batch (a reshape, as TimeDistributed does).
  The last transposed convolution is linear and `call` clips it to [-1, 1]; training's loss is
  taken on the linear output (`call(..., linear=True)`), so a pixel the network overshoots still
  gets a gradient (a tanh output saturates on the background, -1, and the digits' pixels then
  learn nothing)."""

  def __init__(self, frame_shape=(64, 64, 1), filters=(32, 32), strides=(4, 2), lstm_filters=(64, 32, 64),
               leaky_slope=0.2, **kwargs):
    super().__init__(**kwargs)
    self.frame_shape = tuple(int(s) for s in frame_shape)
    self.filters, self.strides = tuple(int(f) for f in filters), tuple(int(s) for s in strides)
    self.lstm_filters, self.leaky_slope = tuple(int(f) for f in lstm_filters), float(leaky_slope)
    self.encoder_layers = [keras.layers.Conv2D(f, 2 * s + 1, strides=s, padding="same", name=f"conv{i}")
                           for i, (f, s) in enumerate(zip(self.filters, self.strides))]
    self.lstm_layers = [keras.layers.ConvLSTM2D(f, 3, padding="same", return_sequences=True, name=f"convlstm{i}")
                        for i, f in enumerate(self.lstm_filters)]
    self.norm_layers = [keras.layers.LayerNormalization(name=f"norm{i}") for i in range(len(self.lstm_filters))]
    outs = list(reversed(self.filters[:-1])) + [self.frame_shape[2]]
    self.decoder_layers = [keras.layers.Conv2DTranspose(f, 2 * s + 1, strides=s, padding="same", name=f"deconv{i}")
                           for i, (f, s) in enumerate(zip(outs, reversed(self.strides)))]
    self.build((None, None) + self.frame_shape)

  def build(self, input_shape):
    shape = (None,) + self.frame_shape
    for layer in self.encoder_layers:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    shape = (None, None) + tuple(shape[1:])
    for layer, norm in zip(self.lstm_layers, self.norm_layers):
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
      norm.build(shape)
    shape = (None,) + tuple(shape[2:])
    for layer in self.decoder_layers:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    self.built = True

  def call(self, x, training=False, linear=False):
    batch, steps = tf.shape(x)[0], tf.shape(x)[1]
    h = tf.reshape(x, (-1,) + self.frame_shape)  # (N * T, h, w, c)
    for layer in self.encoder_layers:
      h = tf.nn.leaky_relu(layer(h), self.leaky_slope)
    h = tf.reshape(h, tf.concat([[batch, steps], tf.shape(h)[1:]], axis=0))
    for layer, norm in zip(self.lstm_layers, self.norm_layers):
      h = norm(layer(h))
    h = tf.reshape(h, tf.concat([[-1], tf.shape(h)[2:]], axis=0))
    for i, layer in enumerate(self.decoder_layers):
      h = layer(h)
      if i < len(self.decoder_layers) - 1:
        h = tf.nn.leaky_relu(h, self.leaky_slope)
    h = to_float32(tf.reshape(h, tf.concat([[batch, steps], self.frame_shape], axis=0)))  # float32 losses, scores
    return h if linear else tf.clip_by_value(h, -1.0, 1.0)

  def floats_per_frame(self) -> int:
    """Every layer output for one frame: what the automatic chunk size budgets for."""
    side = self.frame_shape[0] // math.prod(self.strides)
    return (memory.chain_floats(self.encoder_layers, self.frame_shape)
            + sum(6 * f * side * side for f in self.lstm_filters)  # the output, the four gates, the norm
            + memory.chain_floats(self.decoder_layers, (side, side, self.lstm_filters[-1])))

  def get_config(self):
    return {**super().get_config(), "frame_shape": list(self.frame_shape), "filters": list(self.filters),
            "strides": list(self.strides), "lstm_filters": list(self.lstm_filters), "leaky_slope": self.leaky_slope}


def build_networks(config) -> Dict[str, keras.Model]:
  return {"autoencoder": SpatioTemporalAutoencoder(
      frame_shape=config.image_shape, filters=config.e_filters, strides=config.e_strides,
      lstm_filters=config.convlstm_filters, leaky_slope=config.leaky_slope, name="autoencoder")}


def noise(rng: np.random.Generator, n: int, config) -> np.ndarray:
  """(n, 1) uniform in [0, 1): where in its clip each example's training window starts."""
  return rng.uniform(0, 1, (n, 1)).astype(np.float32)


def sample(networks, noise) -> None:
  """No prior to sample from: no sample grids."""
  return None


def frame_errors(x, reconstruction, kind: str):
  """(batch, T): per frame, the sum over its pixels of |x - x'| (l1) or (x - x')^2 (l2)."""
  if kind not in RECON_LOSSES:
    raise AnoganError(f"unknown recon_loss '{kind}'; use l1 or l2")
  diff = x - reconstruction
  per_pixel = tf.abs(diff) if kind == "l1" else tf.square(diff)
  return tf.reduce_sum(per_pixel, axis=[2, 3, 4])


# --- training

class Trainer(base.PhasedAdamTrainer):
  """train_step(x, noise, phase): one Adam step on a window of `clip_window` frames per clip."""

  loss_names = ("loss",)

  def __init__(self, config, networks):
    super().__init__(name="convlstm_ae_trainer")
    self.config = config
    self.model = networks["autoencoder"]
    self.build_optimizers()

  @property
  def variables_to_train(self) -> list:
    return self.model.trainable_variables

  def train_step(self, x, noise, phase: int):
    length, window = self.config.clip_length, self.config.clip_window
    offsets = tf.cast(tf.floor(noise[:, 0] * (length - window + 1)), tf.int32)
    offsets = tf.minimum(offsets, length - window)  # u < 1, but float rounding
    frames = offsets[:, None] + tf.range(window)[None, :]
    windows = tf.gather(x, frames, batch_dims=1)  # (batch, window, h, w, c)
    with tf.GradientTape() as tape:
      reconstruction = self.model(windows, training=True, linear=True)
      loss = tf.reduce_mean(tf.reduce_sum(frame_errors(windows, reconstruction, self.config.recon_loss), axis=1))
    self.apply(tape, loss, phase)
    return {"loss": loss}


def make_trainer(config, networks) -> Trainer:
  return Trainer(config, networks)


# --- scoring

def window_starts(length: int, window: int):
  """Where the scoring windows start: every ceil(window / 2) frames, and one ending at the last frame."""
  starts = list(range(0, length - window + 1, max(1, -(-window // 2))))
  if starts[-1] + window < length:
    starts.append(length - window)
  return starts


class Scorer(base.OnePassScorer):
  """Clips (N, clip_length, h, w, c) -> score, reconstruction, residual maps and per-frame scores
  (see the module's docstring), `batch_size` clips per compiled pass, the last chunk padded."""

  def __init__(self, model, clip_length: int, window: int, recon_loss: str = "l1", batch_size: int = 0,
               ink_power: float = 0.0):
    if recon_loss not in RECON_LOSSES:
      raise AnoganError(f"unknown recon_loss '{recon_loss}'; use l1 or l2")
    self.model, self.recon_loss, self.window = model, recon_loss, int(window)
    self.ink_power = base.checked_ink_power(ink_power)
    self.example_shape = (int(clip_length),) + tuple(model.frame_shape)
    self.starts = window_starts(int(clip_length), self.window)
    self.init_chunks(batch_size)

  def activation_floats_per_image(self) -> int:
    """Per clip: every layer output of the autoencoder for each frame of each window."""
    return self.model.floats_per_frame() * self.window * len(self.starts)

  def settings(self) -> dict:
    return {"recon_loss": self.recon_loss, "map_batch_size": self.batch_size, "clip_window": self.window,
            **losses.ink_setting(self.ink_power)}

  def score_tensors(self, x) -> base.ScoreResult:
    length = self.example_shape[0]
    total = tf.zeros_like(x)
    counts = np.zeros(length, np.float32)
    for start in self.starts:  # a few windows, unrolled in the graph
      out = self.model(x[:, start:start + self.window], training=False)
      total += tf.pad(out, [[0, 0], [start, length - start - self.window], [0, 0], [0, 0], [0, 0]])
      counts[start:start + self.window] += 1
    reconstruction = total / tf.constant(counts)[None, :, None, None, None]
    errors = frame_errors(x, reconstruction, self.recon_loss)  # (N, T)
    low = tf.reduce_min(errors, axis=1, keepdims=True)
    span = tf.reduce_max(errors, axis=1, keepdims=True) - low
    regularity = 1.0 - tf.math.divide_no_nan(errors - low, span)
    clip_error = tf.reduce_mean(errors, axis=1)
    score = losses.ink_normalised(clip_error, x, self.ink_power)
    return base.ScoreResult(score=score, reconstruction=reconstruction, residual_map=tf.abs(x - reconstruction),
                            parts={"reconstruction": clip_error},
                            extras={"frame_scores": errors, "regularity": regularity})


def make_scorer(config, networks, recon_loss: Optional[str] = None, batch_size: Optional[int] = None) -> Scorer:
  """Overrides: recon_loss (default config.recon_loss), batch_size (default --map_batch_size; 0: from
  the available memory)."""
  return Scorer(networks["autoencoder"], config.clip_length, config.clip_window,
                recon_loss=recon_loss or config.recon_loss,
                batch_size=base.score_batch_size(config, batch_size),
                ink_power=config.ink_power)
