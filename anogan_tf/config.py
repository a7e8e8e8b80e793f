"""One place for every hyperparameter: a frozen dataclass with seed 000's defaults.

Field names are also the absl flag names (see `flags.py`), the keys of `flags.txt`
and the words used in the README: one name per idea.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Tuple

from anogan_tf.errors import AnoganError


@dataclasses.dataclass(frozen=True)
class Config:
  """Settings of one run. Defaults are seed 000 (TF1 code, MNIST 28x28x1)."""

  # --- model family
  model: str = "anogan"  # anogan | egbad (Efficient GAN) | ae (autoencoder) | vae

  # --- data
  dataset: str = "mnist"  # mnist | fashion_mnist | cifar10
  data_dir: str = ""  # folder of <dataset>.npz; empty: $ANOGAN_DATA_DIR, then keras.datasets
  normal_classes: Tuple[int, ...] = (0,)  # trained on; every other class is an anomaly
  test_examples: int = 0  # 0: the whole test split; N: a fixed seeded subset with both labels
  train_examples: int = 0  # 0: every normal training image; N: only the first N (quick runs, tests)
  val_fraction: float = 0.0  # share of the normal training images held out of training (seeded): the validation normals
  eval_split: str = "test"  # evaluate on: test (the test split) | val (held-out normals + as many other-class train images)
  seed: int = 0

  # --- networks
  latent_dim: int = 50
  z_prior: str = "uniform"  # training z ~ U(-1, 1) (seed 000) or "normal": N(0, 1)
  g_dense_channels: int = 32  # Dense(h/4 * w/4 * this), reshaped
  g_filters: Tuple[int, ...] = (16, 8)  # hidden up-convolutions
  g_strides: Tuple[int, ...] = (2, 2, 1)  # one per up-convolution incl. the output one
  g_upsampling: str = "transpose"  # Conv2DTranspose (seed 000) | "nearest": UpSampling2D+Conv2D
  g_batchnorm: bool = True
  g_dense_batchnorm: bool = True  # BN+activation right after the Dense layer
  g_activation: str = "leaky_relu"  # leaky_relu | relu
  d_filters: Tuple[int, ...] = (16, 32)
  d_strides: Tuple[int, ...] = (2, 2)
  d_batchnorm: bool = False  # seed 000's discriminator has no BN
  d_dropout: float = 0.0
  leaky_slope: float = 0.2  # tf.nn.leaky_relu's slope; Keras 3's LeakyReLU default is 0.3
  bn_momentum: float = 0.99  # tf.layers.batch_normalization default, same as Keras
  feature_layer: str = "act1"  # discriminator layer f() for the discrimination loss

  e_filters: Tuple[int, ...] = (16, 32)  # encoder convolutions (egbad, ae, vae, warm start), shaped like D's
  e_strides: Tuple[int, ...] = (2, 2)  # one per entry of --e_filters
  e_batchnorm: bool = False  # BN after each encoder convolution

  # --- training
  epochs: int = 200
  batch_size: int = 256
  g_steps: int = 2  # generator steps per discriminator step, on the same z batch
  d_step: str = "joint"  # one D update on real + fake (seed 000) | separate: real, then fake (seed 002's two train_on_batch)
  d_fakes_mode: str = "training"  # G's BN mode for the D step's fakes: training (seed 000) | inference (seed 002's predict)
  lr: float = 1e-3
  lr_decay_epoch: int = 150  # from this epoch on: fresh Adam instances at lr_after_decay; 0: never
  lr_after_decay: float = 1e-4
  adam_beta_1: float = 0.9
  adam_beta_2: float = 0.999
  adam_epsilon: float = 1e-8  # TF1 default; Keras uses 1e-7
  deterministic: bool = False  # tf.config.experimental.enable_op_determinism(): same seed, same numbers

  recon_loss: str = "l1"  # ae / vae reconstruction error, trained and scored: l1 (mean |x - x'|) | l2 (mean squared)
  kl_weight: float = 1.0  # vae: weight of the KL term in the training loss
  encoder_epochs: int = 0  # anogan: epochs of the warm-start encoder trained after the GAN (0: none)
  kappa: float = 1.0  # warm-start encoder loss: |x - G(E(x))| + kappa * |f(x) - f(G(E(x)))|

  # --- scoring
  vae_score: str = "reconstruction"  # vae score: reconstruction (error of the mean decoding) | elbo (negative ELBO)
  initial_z: str = "random"  # anogan: the search starts from the mapper's seeded draw | encoder: from E(x)

  # --- latent mapping (the LatentMapper)
  lam: float = 0.7  # weight of the discrimination loss; the paper uses 0.1
  map_steps: Tuple[int, ...] = (50, 100)  # Adam iterations per stage, a fresh Adam per stage
  map_lrs: Tuple[float, ...] = (1e-1, 1e-2)  # one learning rate per stage
  map_reduction: str = "mean"  # per-image loss: mean over pixels/features (seed 000) | sum
  z_init: str = "uniform"  # initial z: U(-1, 1) (seed 000) | "normal": N(0, z_init_std)
  z_init_std: float = 1.0
  map_batch_size: int = 0  # images mapped at once (scores agree to 1e-4 at any value); 0: automatic, up to 1024 as memory allows

  def __post_init__(self):
    check(self)

  def replace(self, **changes) -> "Config":
    return dataclasses.replace(self, **changes)

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    return {"cifar10": (32, 32, 3)}.get(self.dataset, (28, 28, 1))

  def generator_kwargs(self) -> dict:
    return dict(latent_dim=self.latent_dim, image_shape=self.image_shape,
                dense_channels=self.g_dense_channels, filters=self.g_filters,
                strides=self.g_strides, upsampling=self.g_upsampling,
                batchnorm=self.g_batchnorm, dense_batchnorm=self.g_dense_batchnorm,
                activation=self.g_activation, leaky_slope=self.leaky_slope,
                bn_momentum=self.bn_momentum)

  def discriminator_kwargs(self) -> dict:
    return dict(image_shape=self.image_shape, filters=self.d_filters,
                strides=self.d_strides, batchnorm=self.d_batchnorm,
                dropout=self.d_dropout, leaky_slope=self.leaky_slope,
                bn_momentum=self.bn_momentum, feature_layer=self.feature_layer)

  def mapper_kwargs(self) -> dict:
    return dict(lam=self.lam, steps=self.map_steps, learning_rates=self.map_lrs,
                reduction=self.map_reduction, z_init=self.z_init,
                z_init_std=self.z_init_std, adam_epsilon=self.adam_epsilon,
                batch_size=self.map_batch_size, seed=self.seed)

  # --- flags.txt: every field as --name=value, usable as an absl flagfile

  def to_flagfile(self) -> str:
    lines = []
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
      elif isinstance(value, bool):
        value = "true" if value else "false"
      lines.append(f"--{field.name}={value}")
    return "\n".join(lines) + "\n"

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


def parse_value(name, hint, raw):
  try:
    if hint is bool:
      if str(raw).lower() in ("true", "1", "yes"):
        return True
      if str(raw).lower() in ("false", "0", "no"):
        return False
      raise ValueError(raw)
    if typing.get_origin(hint) is tuple:
      (item_type, *_) = typing.get_args(hint)
      items = raw if isinstance(raw, (list, tuple)) else [s for s in str(raw).split(",") if s.strip()]
      return tuple(item_type(s) for s in items)
    return hint(raw)
  except (TypeError, ValueError):
    raise AnoganError(f"setting '{name}' has the invalid value '{raw}'; expected {getattr(hint, '__name__', hint)}") from None


DATASETS = ("mnist", "fashion_mnist", "cifar10")
MODELS = ("anogan", "egbad", "ae", "vae")


def check(config: Config) -> None:
  """Rejects settings that cannot work, with a message naming the fix."""
  def need(ok, message):
    if not ok:
      raise AnoganError(message)
  need(config.model in MODELS, f"unknown --model '{config.model}'; use one of {', '.join(MODELS)}")
  need(config.dataset in DATASETS,
       f"unknown dataset '{config.dataset}'; use one of {', '.join(DATASETS)}")
  need(len(config.normal_classes) > 0, "--normal_classes is empty; give at least one class, e.g. --normal_classes=0")
  need(config.z_prior in ("uniform", "normal"), f"unknown --z_prior '{config.z_prior}'; use uniform or normal")
  need(config.z_init in ("uniform", "normal"), f"unknown --z_init '{config.z_init}'; use uniform or normal")
  need(config.g_upsampling in ("transpose", "nearest"), f"unknown --g_upsampling '{config.g_upsampling}'; use transpose or nearest")
  need(config.g_activation in ("leaky_relu", "relu"), f"unknown --g_activation '{config.g_activation}'; use leaky_relu or relu")
  need(config.d_step in ("joint", "separate"), f"unknown --d_step '{config.d_step}'; use joint or separate")
  need(config.d_fakes_mode in ("training", "inference"),
       f"unknown --d_fakes_mode '{config.d_fakes_mode}'; use training or inference")
  need(config.map_reduction in ("mean", "sum"), f"unknown --map_reduction '{config.map_reduction}'; use mean or sum")
  need(len(config.g_strides) == len(config.g_filters) + 1,
       "--g_strides needs one stride per entry of --g_filters plus one for the output layer")
  need(len(config.d_strides) == len(config.d_filters), "--d_strides needs one stride per entry of --d_filters")
  need(len(config.map_steps) == len(config.map_lrs) and len(config.map_steps) > 0,
       "--map_steps and --map_lrs need the same number of stages (at least one)")
  need(all(s > 0 for s in config.map_steps), "--map_steps must be positive")
  need(config.epochs >= 0 and config.batch_size > 0 and config.latent_dim > 0,
       "--epochs, --batch_size and --latent_dim must be positive")
  need(config.map_batch_size >= 0, "--map_batch_size must be positive, or 0 to choose it from the available memory")
  need(0.0 <= config.lam <= 1.0, f"--lam={config.lam} is outside [0, 1]")
  need(config.test_examples >= 0, "--test_examples must be >= 0 (0 means the whole test split)")
  need(config.train_examples >= 0, "--train_examples must be >= 0 (0 means every normal training image)")
  need(0.0 <= config.val_fraction < 1.0, f"--val_fraction={config.val_fraction} is outside [0, 1); e.g. 0.1 "
       "holds out a tenth of the normal training images")
  need(config.eval_split in ("test", "val"), f"unknown --eval_split '{config.eval_split}'; use test or val")
  need(config.eval_split != "val" or config.val_fraction > 0,
       "--eval_split=val needs held-out images: train with --val_fraction > 0 (e.g. 0.1)")
  need(len(config.e_strides) == len(config.e_filters) and all(v > 0 for v in config.e_filters + config.e_strides),
       "--e_strides needs one positive stride per entry of --e_filters (positive too)")
  need(config.recon_loss in ("l1", "l2"), f"unknown --recon_loss '{config.recon_loss}'; use l1 or l2")
  need(config.kl_weight >= 0, f"--kl_weight={config.kl_weight} must be >= 0")
  need(config.encoder_epochs >= 0, "--encoder_epochs must be >= 0 (0: no warm-start encoder)")
  need(config.kappa >= 0, f"--kappa={config.kappa} must be >= 0")
  need(config.vae_score in ("reconstruction", "elbo"), f"unknown --vae_score '{config.vae_score}'; use reconstruction or elbo")
  need(config.initial_z in ("random", "encoder"), f"unknown --initial_z '{config.initial_z}'; use random or encoder")
