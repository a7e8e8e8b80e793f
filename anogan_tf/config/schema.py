"""One place for every hyperparameter: a frozen dataclass with seed 000's defaults.

Field names are also the absl flag names (anogan_tf/cli/flags.py; a flag's help is its field's
`help`), the keys of `flags.txt` and the words used in the README: one name per idea.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Tuple

from anogan_tf.config.checks import check
from anogan_tf.config.values import (
  FOLDER_IMAGE_SIZE,
  NATIVE_SHAPES,
  PICTURE_DATASETS,
  examples_of,
  flag_text,
  parse_value,
)
from anogan_tf.errors import AnoganError


def setting(default, help: str = "", *, evaluate: bool = False, resume: bool = False):
  """A Config field: its default and its flag's help (the field's name when empty); `evaluate`:
  evaluate and score may set it (it changes how images are scored, not the trained networks);
  `resume`: a workdir's training resumes with another value (it does not change what training
  computes: --epochs, the scoring settings, the devices)."""
  return dataclasses.field(default=default, metadata={"help": help, "evaluate": evaluate, "resume": resume})


@dataclasses.dataclass(frozen=True)
class Config:
  """Settings of one run. Defaults are seed 000 (TF1 code, MNIST 28x28x1)."""

  # --- model family
  model: str = setting("anogan",
                       "the model family (anogan_tf/models/): anogan | egbad (Efficient GAN) | ae (autoencoder) |"
                       " vae (variational autoencoder) | lstm_ae (LSTM autoencoder, series) | convlstm_ae "
                       "(spatio-temporal autoencoder, clips) | draem (DRAEM: reconstructive + discriminative networks "
                       "trained on simulated anomalies)")

  # --- data
  dataset: str = setting("mnist",
                         "mnist | fashion_mnist | cifar10 | folder (your own images in --data_dir: train/good/, "
                         "test/good/, test/<defect>/) | ucr (series of the UCR archive: --data_dir=ROOT "
                         "--ucr_name=NAME reads ROOT/NAME/NAME_TRAIN.tsv and NAME_TEST.tsv) | moving_mnist (clips "
                         "generated from MNIST) | frames (your own clips in --data_dir: train/<clip>/, test/<clip>/ "
                         "of frame pictures)")
  data_dir: str = setting("",
                          "folder of <dataset>.npz (moving_mnist: of mnist.npz); empty: $ANOGAN_DATA_DIR, then "
                          "keras.datasets; --dataset=folder or frames: the folder holding train/ and test/",
                          evaluate=True, resume=True)
  normal_classes: Tuple[int, ...] = setting((0,), "trained on; every other class is an anomaly (ucr: the archive's "
                                                 "labels as written, e.g. 1 or -1)")
  ucr_name: str = setting("", "--dataset=ucr: the archive's dataset, the folder NAME under --data_dir (empty "
                              "--data_dir: $ANOGAN_DATA_DIR/ucr)")
  test_examples: int = setting(0, "0: the whole test split; N: a fixed seeded subset with both labels",
                               evaluate=True, resume=True)
  train_examples: int = setting(0, "0: every normal training image; N: only the first N (quick runs, tests)")
  val_fraction: float = setting(0.0,
                                "share of the normal training images held out of training (seeded): the "
                                "validation normals")
  eval_split: str = setting("test",
                            "evaluate on: test (the test split) | val (held-out normals + as many other-class "
                            "train images)", evaluate=True, resume=True)
  clip_length: int = setting(20,
                             "clip datasets: frames per example; moving_mnist generates clips this long, frames cuts "
                             "each clip folder into pieces this long (docs/sequences.md)")
  seed: int = setting(0,
                      "training's draws, the held-out split and test subset; evaluate and score read another as "
                      "--map_seed")
  init_seed_offset: int = setting(0,
                                  "training's draws (initial weights, batches, noise, dropout, augmentation) use "
                                  "--seed plus this, the held-out split and test subset --seed: another model "
                                  "trained on the same images, e.g. a member of an ensemble over training seeds")

  # --- image shape (folder datasets: any size and colour, resized and converted to this)
  image_size: int = setting(0,
                            "images resized to N x N pixels: 32, 64, 128 or 256 (the networks get one more "
                            "stride-2 block per doubling above 32); 0: the dataset's own (MNIST 28, CIFAR-10 32, "
                            "a folder 64)")
  channels: int = setting(0,
                          "1 (grayscale) or 3 (RGB); 0: the dataset's own (a folder: that of its training images,"
                          " which must agree)")

  # --- series shape and scale (--dataset=ucr: read from the training series when training starts,
  # which writes them to flags.txt)
  series_length: int = setting(0, "series: time steps per series; 0: the training series' own")
  series_features: int = setting(0, "series: values per time step; 0: the training series' own (UCR: 1)")
  series_range: Tuple[float, ...] = setting((),
                                            "series: low,high of the raw values, mapped to [-0.8, 0.8] (then "
                                            "clipped to [-1, 1]); empty: the normal training series' min and max")

  # --- networks
  latent_dim: int = setting(50)
  z_prior: str = setting("uniform", "training z ~ U(-1, 1) (seed 000) or \"normal\": N(0, 1)")
  g_dense_channels: int = setting(32, "Dense(h/4 * w/4 * this), reshaped")
  g_filters: Tuple[int, ...] = setting((16, 8), "hidden up-convolutions")
  g_strides: Tuple[int, ...] = setting((2, 2, 1), "one per up-convolution incl. the output one")
  g_upsampling: str = setting("transpose", "Conv2DTranspose (seed 000) | \"nearest\": UpSampling2D+Conv2D")
  g_batchnorm: bool = setting(True)
  g_dense_batchnorm: bool = setting(True, "BN+activation right after the Dense layer")
  g_activation: str = setting("leaky_relu", "leaky_relu | relu")
  g_dense_norm: str = setting("channel",
                              "the Dense block's BN: channel (reshape, then BN per channel: seed 000) | feature "
                              "(BN per Dense output, then reshape: seed 001's BatchNorm1d)")
  g_dense_activation: str = setting("",
                                    "the Dense block's activation: empty = --g_activation; relu (seeds 001, 002) "
                                    "| leaky_relu")
  d_filters: Tuple[int, ...] = setting((16, 32))
  d_strides: Tuple[int, ...] = setting((2, 2))
  d_batchnorm: bool = setting(False, "seed 000's discriminator has no BN")
  d_dropout: float = setting(0.0)
  d_batchnorm_first: bool = setting(True,
                                    "with --d_batchnorm: BN after the first convolution too (seed 002 skips it)")
  d_zero_pad_after: Tuple[int, ...] = setting((),
                                              "convolutions (1-based) followed by ZeroPadding2D(((0, 1), (0, 1)))"
                                              " (seed 002: 2)")
  d_spectral_norm: bool = setting(False,
                                  "anogan, egbad: spectral normalisation of every D weight (Miyato et al. "
                                  "2018: each kernel divided by its largest singular value, one power "
                                  "iteration per training pass)")
  leaky_slope: float = setting(0.2, "tf.nn.leaky_relu's slope; Keras 3's LeakyReLU default is 0.3")
  bn_momentum: float = setting(0.99, "tf.layers.batch_normalization default, same as Keras")
  feature_layer: str = setting("act1", "discriminator layer f() for the discrimination loss",
                               evaluate=True, resume=True)

  clip_window: int = setting(10,
                             "convlstm_ae: frames the network sees at once (Chong & Tay 2017: 10); windows slide over "
                             "each clip")
  convlstm_filters: Tuple[int, ...] = setting((64, 32, 64), "convlstm_ae: the ConvLSTM2D layers' filters")
  e_filters: Tuple[int, ...] = setting((16, 32), "encoder convolutions (egbad, ae, vae, warm start), shaped like D's")
  e_strides: Tuple[int, ...] = setting((2, 2), "one per entry of --e_filters")
  e_batchnorm: bool = setting(False, "BN after each encoder convolution")
  lstm_units: Tuple[int, ...] = setting((64,),
                                       "lstm_ae: the encoder's LSTM layers (the decoder's, in reverse), before the "
                                       "Dense(latent_dim) code")
  lstm_max_steps: int = setting(0,
                                "lstm_ae: the LSTMs run at most this many steps: a series of T steps is cut into "
                                "patches of ceil(T / N) consecutive steps, one patch an LSTM step (its values as "
                                "features), the decoder's Dense gives each step its patch back; 0: one step a step")
  d_z_units: int = setting(128, "egbad: width of D(x, z)'s z Dense layer (seed 003: 512)")
  d_joint_units: Tuple[int, ...] = setting((128,),
                                           "egbad: D(x, z)'s joint Dense layers; the last one's activations are "
                                           "f, the concatenation when empty (seed 003: 1024)")

  # --- training
  epochs: int = setting(200, resume=True)
  batch_size: int = setting(256)
  g_steps: int = setting(2, "generator steps per discriminator step, on the same z batch")
  d_step: str = setting("joint",
                        "one D update on real + fake (seed 000) | separate: real, then fake (seed 002's two "
                        "train_on_batch)")
  d_fakes_mode: str = setting("training",
                              "G's BN mode for the D step's fakes: training (seed 000) | inference (seed 002's "
                              "predict)")
  gan_loss: str = setting("bce",
                          "anogan: bce (sigmoid cross-entropy: seed 000) | wgan_gp (Wasserstein loss with "
                          "gradient penalty, Gulrajani et al. 2017, as f-AnoGAN trains)")
  gp_weight: float = setting(10.0, "--gan_loss=wgan_gp: weight of the gradient penalty")
  diffaugment: str = setting("",
                             "anogan, egbad: DiffAugment (Zhao et al. 2020) of every image D sees, real and fake "
                             "alike: comma-separated color, translation, cutout; empty: none")
  lr: float = setting(1e-3)
  lr_decay_epoch: int = setting(150, "from this epoch on: fresh Adam instances at lr_after_decay; 0: never")
  lr_after_decay: float = setting(1e-4)
  adam_beta_1: float = setting(0.9)
  adam_beta_2: float = setting(0.999)
  adam_epsilon: float = setting(1e-8, "TF1 default; Keras uses 1e-7", evaluate=True)
  ema_momentum: float = setting(0.0,
                                "the weights a run exports: 0, the last ones (seed 000); m in (0, 1): their "
                                "exponential moving average over the last learning-rate phase, momentum m per step "
                                "(Keras' Adam use_ema), e.g. 0.99; the family's own epochs (not a stage such as "
                                "anogan's warm-start encoder)")
  d_lr_scale: float = setting(1.0,
                              "egbad: D's learning rates are --lr and --lr_after_decay times this (seed 003: "
                              "0.25)")
  deterministic: bool = setting(False, "tf.config.experimental.enable_op_determinism(): same seed, same numbers",
                                evaluate=True, resume=True)

  recon_loss: str = setting("l1",
                            "ae / vae reconstruction error, trained and scored: l1 (mean |x - x'|) | l2 (mean "
                            "squared)")
  kl_weight: float = setting(1.0, "vae: weight of the KL term in the training loss")
  encoder_epochs: int = setting(0,
                                "anogan: epochs of the warm-start encoder E trained after the GAN, G and D frozen"
                                " (0: none); more on a finished workdir trains only E", resume=True)
  kappa: float = setting(1.0,
                         "warm-start encoder loss per image: mean |x - G(E(x))| + kappa * mean |f(x) - "
                         "f(G(E(x)))|")

  # --- draem (anogan_tf/models/draem/: the authors' settings in experiments/pictures_draem.flags)
  draem_width: int = setting(16, "draem: channels of both U-Nets' first level, doubling per level up to 8x (the "
                                 "authors: 128 reconstructive, 64 discriminative)")
  draem_seg_width: int = setting(0, "draem: the discriminative U-Net's first-level channels; 0: --draem_width")
  draem_anomaly_fraction: float = setting(0.5, "draem: share of training pictures given a simulated anomaly "
                                               "(the authors: 0.5); the rest stay as they are")
  draem_texture_fraction: float = setting(0.5, "draem: share of simulated anomalies painted from synthetic "
                                               "textures; the rest from the training pictures themselves (moved, "
                                               "rotated, recoloured)")
  draem_smooth_fraction: float = setting(0.0, "draem: share of simulated anomalies painted from the picture "
                                              "itself smoothed in place (mean-filtered or flat at its mean "
                                              "colour), before the texture / own-picture choice; 0: none (the "
                                              "authors')")
  draem_scar_fraction: float = setting(0.0, "draem: share of simulated anomalies whose mask is one to three thin "
                                            "straight strokes (CutPaste's scar) instead of a Perlin blob; 0: none "
                                            "(the authors')")
  draem_flat_fraction: float = setting(0.0, "draem: share of the simulated anomalies not smoothed that are painted "
                                            "in one flat colour (random per channel) instead of a texture or a "
                                            "picture; 0: none (the authors')")
  draem_rotate_fraction: float = setting(0.0, "draem: share of training pictures turned by an angle in [-90, 90) "
                                              "degrees (reflected at the borders) before any anomaly; 0: none (the "
                                              "authors: 0.3, black corners)")
  draem_dihedral_fraction: float = setting(0.0, "draem: share of training pictures turned by a multiple of 90 "
                                                "degrees and maybe mirrored (exactly, the eight ways alike) before "
                                                "any anomaly; 0: none (as the authors)")
  draem_perlin_threshold: float = setting(0.5, "draem: the Perlin noise (about in [-1, 1]) above this is the "
                                               "anomaly's mask (the authors: 0.5)")
  draem_perlin_min_cell: int = setting(8, "draem: the finest Perlin lattice cell in pixels, a power of two "
                                          "(the authors: 8, lattices of 1 to 32 cells at 256 pixels)")
  draem_beta_max: float = setting(0.8, "draem: the original's opacity inside the mask is uniform in [0, this) "
                                       "(the authors: 0.8)")
  draem_focal_gamma: float = setting(2.0, "draem: the focal loss's gamma (the authors: 2)")
  draem_score_window: int = setting(0, "draem: the image score is the max of the anomaly map averaged over this "
                                       "odd window; 0: 21 pixels at 256 (the authors') scaled to the image size",
                                    evaluate=True, resume=True)
  draem_score_shifts: int = setting(0, "draem: the anomaly map is the mean of the picture's and of four copies "
                                       "shifted diagonally by this many pixels (reflected at the borders; "
                                       "test-time augmentation); 0: the picture's alone (the authors')",
                                    evaluate=True, resume=True)
  draem_score_top: float = setting(0.0, "draem: the image score is the mean of this share of the map's pixels, "
                                        "the highest ones (after --draem_score_window), e.g. 0.01; 0: the "
                                        "single highest (the authors')", evaluate=True, resume=True)

  # --- scoring
  vae_score: str = setting("reconstruction",
                           "vae score: reconstruction (error of the mean decoding) | elbo (negative ELBO)",
                           evaluate=True, resume=True)
  initial_z: str = setting("random",
                           "anogan: the search starts from the mapper's seeded draw | encoder: from E(x) (train E"
                           " with --encoder_epochs); with it a single --map_steps=K runs K steps at the last "
                           "--map_lrs, and --map_steps=0 scores at E(x)", evaluate=True, resume=True)

  # --- latent mapping (the LatentMapper)
  lam: float = setting(0.7, "weight of the discrimination loss; the paper uses 0.1", evaluate=True, resume=True)
  map_steps: Tuple[int, ...] = setting((50, 100), "Adam iterations per stage, a fresh Adam per stage",
                                       evaluate=True, resume=True)
  map_lrs: Tuple[float, ...] = setting((1e-1, 1e-2), "one learning rate per stage", evaluate=True, resume=True)
  map_reduction: str = setting("mean", "per-image loss: mean over pixels/features (seed 000) | sum",
                               evaluate=True, resume=True)
  z_init: str = setting("uniform", "initial z: U(-1, 1) (seed 000) | \"normal\": N(0, z_init_std)",
                        evaluate=True, resume=True)
  z_init_std: float = setting(1.0, evaluate=True, resume=True)
  ink_power: float = setting(0.0,
                             "every family: the score divided by the image's ink (mean of (x + 1) / 2) to this "
                             "power; 0: off (the seeds' score); for dark backgrounds (MNIST, Fashion-MNIST), "
                             "where an image with little ink has a small error whatever the model draws",
                             evaluate=True, resume=True)
  map_restarts: int = setting(1,
                              "anogan: searches per image from independent random z; the lowest final loss is the"
                              " score", evaluate=True, resume=True)
  map_seed: int = setting(-1, "anogan: the seed of the search's random start (initial z); -1: --seed",
                          evaluate=True, resume=True)
  map_batch_size: int = setting(0,
                                "images mapped at once (the chunk size changes the kernels' rounding, which a "
                                "search carries into the scores: keep it at 64 or more, and fixed, to compare "
                                "scores; docs/presets.md); 0: automatic, up to 1024 as memory allows (256 in bfloat16)",
                                evaluate=True, resume=True)

  # --- decision threshold (anogan_tf/evaluation/threshold.py)
  threshold_percentile: float = setting(99.0,
                                        "the threshold is this percentile of the held-out normals' scores (needs "
                                        "--val_fraction > 0); score and evaluate may apply another one",
                                        evaluate=True, resume=True)

  # --- numbers (anogan_tf/nn/precision.py)
  precision: str = setting("float32",
                           "float32 | bfloat16: Keras' mixed_bfloat16 policy (convolutions and matmuls in bfloat16;"
                           " weights, z, optimizer state, losses, scores and BatchNorm statistics in float32); "
                           "fast on CPUs with AMX or AVX512-BF16; evaluate and score may use the other one; a "
                           "training resumes only with its own", evaluate=True)

  # --- devices (anogan_tf/engine/distribute.py): where train, evaluate and score run, not what they compute
  strategy: str = setting("default",
                          "default (one device) | mirrored (tf.distribute.MirroredStrategy: every local GPU, or "
                          "--cpu_devices) | multiworker (MultiWorkerMirroredStrategy over TF_CONFIG's hosts)",
                          evaluate=True, resume=True)


  def __post_init__(self):
    check(self)

  def replace(self, **changes) -> "Config":
    return dataclasses.replace(self, **changes)

  @property
  def image_side(self) -> int:
    """The images' height and width: --image_size, else the dataset's own."""
    if self.image_size:
      return self.image_size
    if examples_of(self.dataset) not in ("images", "clips"):  # clips: their frames'
      raise AnoganError(f"--dataset={self.dataset} holds {examples_of(self.dataset)}, not images; use a --model "
                        f"for {examples_of(self.dataset)}")
    return FOLDER_IMAGE_SIZE if self.dataset in PICTURE_DATASETS else NATIVE_SHAPES[self.dataset][0]

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    """(h, w, channels) of the images the networks take. A folder's channel count comes from its
    training images when training starts (folder_data.resolve_image_shape), which writes it to
    flags.txt; before that it is unknown unless --channels gives it."""
    if self.dataset in PICTURE_DATASETS and not self.channels:
      where = "train/good/" if self.dataset == "folder" else "train/<clip>/"
      raise AnoganError(f"--dataset={self.dataset} has no channel count yet: training reads it from the images "
                        f"({where}); pass --channels=1 or --channels=3 to use the images before that")
    side = self.image_side  # first: a dataset of other examples has no image shape
    channels = self.channels or NATIVE_SHAPES[self.dataset][2]
    return (side, side, channels)

  # The networks' depth follows the image size (networks.generator_layout / encoder_layout): up to
  # 32 pixels they are the configured ones (seed 000's for MNIST), one stride-2 block more per doubling.

  def generator_kwargs(self) -> dict:
    from anogan_tf.config.layouts import generator_layout
    filters, strides = generator_layout(self.g_filters, self.g_strides, self.g_dense_channels, self.image_side)
    return dict(latent_dim=self.latent_dim, image_shape=self.image_shape,
                dense_channels=self.g_dense_channels, filters=filters,
                strides=strides, upsampling=self.g_upsampling,
                batchnorm=self.g_batchnorm, dense_batchnorm=self.g_dense_batchnorm,
                activation=self.g_activation, leaky_slope=self.leaky_slope,
                bn_momentum=self.bn_momentum, dense_norm=self.g_dense_norm,
                dense_activation=self.g_dense_activation)

  def discriminator_kwargs(self) -> dict:
    from anogan_tf.config.layouts import encoder_layout
    filters, strides = encoder_layout(self.d_filters, self.d_strides, self.image_side)
    return dict(image_shape=self.image_shape, filters=filters,
                strides=strides, batchnorm=self.d_batchnorm,
                dropout=self.d_dropout, leaky_slope=self.leaky_slope,
                bn_momentum=self.bn_momentum, batchnorm_first=self.d_batchnorm_first,
                zero_pad_after=self.d_zero_pad_after, spectral_norm=self.d_spectral_norm)

  def encoder_kwargs(self) -> dict:
    """The encoders' shared settings (egbad's E, the autoencoders', AnoGAN's warm start): shaped
    like D, from --e_filters, --e_strides, --e_batchnorm, deepened like D for larger images."""
    from anogan_tf.config.layouts import encoder_layout
    filters, strides = encoder_layout(self.e_filters, self.e_strides, self.image_side)
    return dict(image_shape=self.image_shape, latent_dim=self.latent_dim, filters=filters, strides=strides,
                batchnorm=self.e_batchnorm, leaky_slope=self.leaky_slope, bn_momentum=self.bn_momentum)

  def map_stages(self) -> Tuple[Tuple[int, ...], Tuple[float, ...]]:
    """(steps, learning rates) of the search's stages. With --initial_z=encoder a single
    --map_steps=K refines E(x) for K steps at the last of the --map_lrs (seed 000: 1e-2, its
    fine-tuning stage; the 1e-1 stage is there to leave a random start), and K = 0 is no search;
    otherwise one learning rate per stage, as given."""
    if self.initial_z == "encoder" and len(self.map_steps) == 1:
      return self.map_steps, self.map_lrs[-1:]
    return self.map_steps, self.map_lrs

  @property
  def training_seed(self) -> int:
    """The seed of training's draws: --seed + --init_seed_offset (the data's splits use --seed)."""
    return self.seed + self.init_seed_offset

  @property
  def search_seed(self) -> int:
    """The seed of the search's random start: --map_seed, else --seed."""
    return self.seed if self.map_seed < 0 else self.map_seed

  def mapper_kwargs(self) -> dict:
    steps, learning_rates = self.map_stages()
    return dict(lam=self.lam, steps=steps, learning_rates=learning_rates,
                reduction=self.map_reduction, z_init=self.z_init, ink_power=self.ink_power,
                z_init_std=self.z_init_std, adam_epsilon=self.adam_epsilon,
                batch_size=self.map_batch_size, seed=self.search_seed, feature_layer=self.feature_layer)

  # --- flags.txt: every field as --name=value, usable as an absl flagfile

  def to_flagfile(self) -> str:
    return "".join(f"--{f.name}={flag_text(getattr(self, f.name))}\n" for f in dataclasses.fields(self))

  @classmethod
  def from_flagfile_text(cls, text: str) -> "Config":
    values = {}
    for line in text.splitlines():
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      name, _, raw = line.lstrip("-").partition("=")
      values[name] = raw
    return cls.from_strings(values)

  @classmethod
  def from_strings(cls, values: dict) -> "Config":
    """Builds a Config from {field name: string value} (unknown names are errors)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, raw in values.items():
      if name not in hints:
        raise AnoganError(f"unknown setting '{name}'; see `python -m anogan_tf.train --helpfull` for the valid names")
      kwargs[name] = parse_value(name, hints[name], raw)
    return cls(**kwargs)


# What evaluate and score take from their own command line (fields made with evaluate=True): the
# settings that change only how images are mapped, which test images are scored, the decision
# threshold's percentile, and the devices. Every other setting describes the trained networks or
# their training, which the workdir's flags.txt fixes (see `evaluation_config`).
EVALUATION_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata["evaluate"])
# Settings that do not change what training computes (fields made with resume=True): a workdir
# resumes with new values of these.
RESUMABLE_FIELDS = frozenset(f.name for f in dataclasses.fields(Config) if f.metadata["resume"])


def evaluation_config(trained: Config, requested: Config) -> Config:
  """The settings evaluate and score run with: the workdir's (`trained`, from its flags.txt) with
  `requested`'s EVALUATION_FIELDS. Any other setting of `requested` must equal the workdir's, as
  the trained networks fix it; `epochs` alone is let through and ignored (the models are the
  trained ones whatever it says), so a preset flagfile written for training works here too.

  `seed` stays the workdir's: it drew the held-out split and the --test_examples subset, so
  another one would score training images as held-out ones. Another --seed (typed, or from a
  preset such as experiments/base.flags) is read as --map_seed, the search's start, which is
  what it changed in scoring before the start had a setting of its own; --map_seed given too wins."""
  if requested.seed != trained.seed:
    if requested.map_seed == trained.map_seed:
      requested = requested.replace(map_seed=requested.seed)
    requested = requested.replace(seed=trained.seed)
  for field in dataclasses.fields(Config):
    name = field.name
    if name in EVALUATION_FIELDS or name == "epochs":
      continue
    old, new = getattr(trained, name), getattr(requested, name)
    if old != new:
      raise AnoganError(f"--{name}={flag_text(new)} does not match the workdir, trained with "
                        f"--{name}={flag_text(old)}; "
                        f"evaluate and score change only mapping settings, so drop --{name} or train another workdir")
  return trained.replace(**{name: getattr(requested, name) for name in EVALUATION_FIELDS})
