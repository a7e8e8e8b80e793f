"""The value sets and formats of the settings: which strings a setting takes, the datasets' own
image shapes, and how a value is written in flags.txt and parsed back."""

from __future__ import annotations

import typing

from anogan_tf.errors import AnoganError

DATASETS = ("mnist", "fashion_mnist", "cifar10", "folder", "ucr", "moving_mnist", "frames")
# What one example of a dataset is (a family takes one kind: its EXAMPLES, "images" unless it says
# otherwise); datasets not listed hold images.
DATASET_EXAMPLES = {"ucr": "series", "moving_mnist": "clips", "frames": "clips"}
# Image shapes: the .npz datasets' own (a frame's for moving_mnist), and the sizes --image_size takes
# (a folder's or a frames folder's default: 64).
NATIVE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3),
                 "moving_mnist": (64, 64, 1)}
PICTURE_DATASETS = ("folder", "frames")  # your own pictures: any size and colour, read from --data_dir
CLIP_DATASETS = ("moving_mnist", "frames")  # examples are clips (T, h, w, c) of --clip_length frames
IMAGE_SIZES = (32, 64, 128, 256)
FOLDER_IMAGE_SIZE = 64
# The valid values of the string settings; the classes that take them (Generator, LatentMapper,
# losses) check against these too.
DISTRIBUTIONS = ("uniform", "normal")  # z_prior, z_init
UPSAMPLINGS = ("transpose", "nearest")  # g_upsampling
ACTIVATIONS = ("leaky_relu", "relu")  # g_activation
GAN_LOSSES = ("bce", "wgan_gp")  # gan_loss
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")  # diffaugment's comma-separated entries
DENSE_NORMS = ("channel", "feature")  # g_dense_norm
REDUCTIONS = ("mean", "sum")  # map_reduction
PRECISIONS = ("float32", "bfloat16")  # precision


def examples_of(dataset: str) -> str:
  """What one example of `dataset` is: "images" unless DATASET_EXAMPLES says otherwise."""
  return DATASET_EXAMPLES.get(dataset, "images")


def one_of(value, valid, name: str) -> None:
  """Rejects a string setting outside `valid`: AnoganError naming the setting and the valid values."""
  if value not in valid:
    choices = " or ".join(valid) if len(valid) == 2 else "one of " + ", ".join(valid)
    raise AnoganError(f"unknown {name} '{value}'; use {choices}")


def flag_text(value) -> str:
  """A setting's value as written on the command line and in flags.txt: 16,8 / true / 0.001."""
  if isinstance(value, tuple):
    return ",".join(str(v) for v in value)
  if isinstance(value, bool):
    return "true" if value else "false"
  return str(value)


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
    expected = getattr(hint, "__name__", hint)
    raise AnoganError(f"setting '{name}' has the invalid value '{raw}'; expected {expected}") from None
