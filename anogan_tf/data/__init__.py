"""Datasets for the one-class protocol: arrays (.npz in --data_dir or $ANOGAN_DATA_DIR, else
keras.datasets: arrays.py), your own pictures (--dataset=folder: folder.py), UCR series
(--dataset=ucr: ucr.py), clips generated from MNIST (--dataset=moving_mnist: moving_mnist.py) or your
own clips (--dataset=frames: frames.py), split as splits.py says."""

from anogan_tf.data import folder, frames, moving_mnist, ucr
from anogan_tf.data.arrays import (  # noqa: F401
  DATA_DIR_ENV,
  load_arrays,
  load_npz_one_class,
  resize_images,
  resolve_data_dir,
  source_name,
  to_float_images,
)
from anogan_tf.data.splits import OneClassData, test_subset, validation_split  # noqa: F401


def load_one_class(config, read_test: bool = True) -> OneClassData:
  """The normal training images and the evaluation set, checked and scaled.

  The evaluation set is the test split (label 1 = not a normal class), or a seeded subset of
  it with --test_examples; with --eval_split=val it is the validation set of `validation_split`.
  --dataset=folder: folder.load_folder, which with `read_test=False` (training) does not read the
  evaluation images.
  """
  if config.dataset == "folder":
    return folder.load_folder(config, read_test)
  if config.dataset == "ucr":
    return ucr.load_ucr(config, read_test)
  if config.dataset == "moving_mnist":
    return moving_mnist.load_moving_mnist(config, read_test)
  if config.dataset == "frames":
    return frames.load_frames(config, read_test)
  return load_npz_one_class(config)


def resolve_shape(config):
  """`config` with what training reads from the data made explicit, as flags.txt records it: a
  folder's image size and channels (folder.resolve_image_shape; a frames folder's:
  frames.resolve_image_shape), UCR series' length, features and range (ucr.resolve_series); other
  datasets' configs as they are."""
  if config.dataset == "frames":
    return frames.resolve_image_shape(config)
  return ucr.resolve_series(folder.resolve_image_shape(config))
