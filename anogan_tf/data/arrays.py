"""Array datasets (.npz or keras.datasets) for the one-class protocol: train on the normal
classes, score the whole test split.

Arrays come from `<data_dir>/<name>.npz` (Keras' layout: x_train, y_train, x_test, y_test) when
`--data_dir` or $ANOGAN_DATA_DIR names a folder, otherwise from `keras.datasets` (download+cache).
Images are scaled to [-1, 1] as float32 (batch, h, w, c). `--dataset=folder` reads your own
pictures instead (folder.py): streamed from disk for training, with file names and masks.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from anogan_tf.config import NATIVE_SHAPES
from anogan_tf.data.splits import OneClassData, test_subset, validation_split
from anogan_tf.errors import AnoganError

DATA_DIR_ENV = "ANOGAN_DATA_DIR"


def resolve_data_dir(data_dir: str = "") -> str:
  return data_dir or os.environ.get(DATA_DIR_ENV, "")


def source_name(name: str, data_dir: str = "") -> str:
  """Where `name` is loaded from, for messages: the .npz path or keras.datasets.<name>."""
  data_dir = resolve_data_dir(data_dir)
  return os.path.join(data_dir, f"{name}.npz") if data_dir else f"keras.datasets.{name}"


# The arrays of the last .npz read, by (path, inode, size, modification time): a process that trains
# then evaluates (or reruns) decompresses the file once. Read-only, so no caller changes them.
_LAST_NPZ: dict = {}


def _read_npz(path: str) -> list:
  """[x_train, y_train, x_test, y_test] of the .npz at `path`, read-only; read again when the file changed."""
  stat = os.stat(path)
  key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
  if key not in _LAST_NPZ:
    with np.load(path, allow_pickle=False) as f:
      if not hasattr(f, "files"):
        raise AnoganError(f"{path} holds a single array, not an .npz archive; save it with "
                          "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
      arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    for array in arrays:
      array.setflags(write=False)
    _LAST_NPZ.clear()
    _LAST_NPZ[key] = arrays
  return _LAST_NPZ[key]


def load_arrays(name: str, data_dir: str = ""):
  """(x_train, y_train), (x_test, y_test) as loaded (uint8 images) with flat integer labels.

  Only the file's structure is checked here (arrays present, one label per image); pixel
  values are checked by `to_float_images`.
  """
  data_dir = resolve_data_dir(data_dir)
  source = source_name(name, data_dir)
  if data_dir:
    path = source
    if not os.path.isdir(data_dir):
      raise AnoganError(f"data folder {data_dir} does not exist; fix --data_dir or ${DATA_DIR_ENV}")
    if not os.path.isfile(path):
      raise AnoganError(f"dataset file {path} is missing; put {name}.npz (x_train, y_train, x_test, y_test) "
                        f"there or unset --data_dir/${DATA_DIR_ENV} to download it")
    try:
      arrays = _read_npz(path)
    except AnoganError:
      raise
    except KeyError as e:
      raise AnoganError(f"{path} has no array {e}; it needs x_train, y_train, x_test, y_test") from None
    except Exception as e:  # zipfile, zlib, pickle refusal, truncation: all mean a damaged file
      raise AnoganError(f"{path} is not a readable .npz file ({type(e).__name__}); "
                        "replace it with a good copy") from None
  else:
    import keras  # deferred: keras.datasets is only needed without a data folder
    loaders = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist,
               "cifar10": keras.datasets.cifar10}
    if name not in loaders:
      raise AnoganError(f"unknown dataset '{name}'; use one of {', '.join(loaders)}")
    try:
      (x_train, y_train), (x_test, y_test) = loaders[name].load_data()
    except Exception as e:  # network errors come in many types
      raise AnoganError(f"could not load {name} through keras.datasets ({type(e).__name__}: no network?); "
                        f"put {name}.npz in a folder and pass --data_dir or set ${DATA_DIR_ENV}") from None
    arrays = [x_train, y_train, x_test, y_test]
  x_train, y_train, x_test, y_test = arrays
  return (x_train, _labels(y_train, x_train, source, "train")), (x_test, _labels(y_test, x_test, source, "test"))


def _labels(y, x, source: str, split: str) -> np.ndarray:
  """Flat int64 labels, one per image of x, or an AnoganError naming the problem."""
  x, y = np.asarray(x), np.asarray(y)
  if x.ndim not in (3, 4):
    raise AnoganError(f"{source}: x_{split} has shape {x.shape}, expected images (n, h, w) or (n, h, w, channels); "
                      "store the images as one array")
  integral = y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)))
  if not integral:
    raise AnoganError(f"{source}: y_{split} holds {y.dtype} values, not integer class labels; "
                      "store the labels as integers")
  if y.size != len(x):
    raise AnoganError(f"{source}: y_{split} has {y.size} labels for {len(x)} images in x_{split}; "
                      "store exactly one integer label per image")
  return y.reshape(-1).astype(np.int64)


def to_float_images(x: np.ndarray, expected_shape: Sequence[int] = None, source: str = "images") -> np.ndarray:
  """Pixels (n, h, w[, c]) in 0..255 (uint8 as in Keras' files) -> float32 (n, h, w, c) in [-1, 1].

  Raises AnoganError for a wrong image shape or channel count, a non-numeric dtype, NaN/inf,
  values outside 0..255, and floats already scaled to [0, 1] or [-1, 1].
  """
  x = np.asarray(x)
  if x.dtype.kind not in "uif":
    raise AnoganError(f"{source} have dtype {x.dtype}; store pixels as uint8 in 0..255 (Keras' layout)")
  if x.ndim == 3:
    x = x[..., None]  # (n, h, w) grayscale -> (n, h, w, 1)
  if expected_shape is not None and (x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected_shape)):
    got, expected = tuple(x.shape[1:]), tuple(expected_shape)
    what = (f"{got[-1]} channels" if x.ndim == 4 and got[:2] == expected[:2] else "shape") + f" {got}"
    raise AnoganError(f"{source} have {what} per image, expected {expected} (h, w, channels); "
                      "convert the images to that size and channel count, or choose the --dataset they belong to")
  x = x.astype(np.float32)
  if x.size and not np.isfinite(x).all():
    raise AnoganError(f"{source} contain NaN or inf; repair or re-create the data file")
  if x.size and (x.min() < 0 or x.max() > 255):
    raise AnoganError(f"{source} have values in [{x.min():.3g}, {x.max():.3g}], expected pixels in 0..255; "
                      "store uint8 pixels (e.g. np.uint8(np.round((x + 1) * 127.5)) for data in [-1, 1])")
  if x.size and x.max() <= 1.0:
    raise AnoganError(f"{source} have values in [{x.min():.3g}, {x.max():.3g}] only (scaled or binary data?), but "
                      "pixels must be 0..255; store np.uint8(np.round(x * 255)) instead")
  return x / 127.5 - 1.0  # the seed's images * 2 - 1 with images in [0, 1]


def resize_images(x: np.ndarray, size: int, batch: int = 1024) -> np.ndarray:
  """(n, h, w, c) float32 images resized to (n, size, size, c) as folder_data resizes pictures
  (bilinear, antialiased); unchanged (the same array) when they already have that size."""
  if x.shape[1:3] == (size, size):
    return x
  import tensorflow as tf  # deferred: only --image_size other than the dataset's own needs it
  return np.concatenate([tf.image.resize(x[i:i + batch], (size, size), antialias=True).numpy()
                         for i in range(0, len(x), batch)] or [np.zeros((0, size, size, x.shape[-1]), np.float32)])


def load_npz_one_class(config) -> OneClassData:
  """A .npz dataset's normal training images and evaluation set, checked and scaled (see
  anogan_tf.data.load_one_class)."""
  (x_train, y_train), (x_test, y_test) = load_arrays(config.dataset, config.data_dir)
  source = source_name(config.dataset, config.data_dir)
  normal = np.asarray(config.normal_classes)
  present = np.unique(y_train)
  if not len(present):
    raise AnoganError(f"{source} has no training images (x_train is empty); use a complete data file")
  missing = [c for c in normal if c not in present]
  if missing:
    raise AnoganError(f"no training images of class {missing[0]} in {source} "
                      f"(classes {present.min()}..{present.max()}); choose --normal_classes among those")
  shape = NATIVE_SHAPES[config.dataset]  # as stored; --image_size resizes after the checks
  kept, held, anomalies = validation_split(y_train, normal, config.val_fraction, config.seed)
  if config.val_fraction > 0 and not len(held):
    raise AnoganError(f"--val_fraction={config.val_fraction} holds out no image of the {len(kept)} normal "
                      "training images; raise it or use --val_fraction=0")
  train_positions = kept[:config.train_examples] if config.train_examples else kept
  x_train_normal = resize_images(to_float_images(x_train[train_positions], shape, f"{source}: x_train images"),
                                 config.image_side)
  if config.eval_split == "val":
    positions = np.concatenate([held, anomalies])
    labels = np.concatenate([np.zeros(len(held), np.int64), np.ones(len(anomalies), np.int64)])
    order = np.argsort(positions)
    positions, labels = positions[order], labels[order]
    idx = test_subset(labels, config.test_examples, config.seed)
    x_val = to_float_images(x_train[positions[idx]], shape, f"{source}: x_train images")
    return OneClassData(x_train=x_train_normal, x_test=resize_images(x_val, config.image_side),
                        y_test=labels[idx], classes_test=y_train[positions[idx]].astype(np.int64),
                        test_indices=positions[idx], split="val")
  labels = (~np.isin(y_test, normal)).astype(np.int64)
  idx = test_subset(labels, config.test_examples, config.seed)
  x_test = resize_images(to_float_images(x_test[idx], shape, f"{source}: x_test images"), config.image_side)
  return OneClassData(x_train=x_train_normal, x_test=x_test, y_test=labels[idx],
                      classes_test=y_test[idx].astype(np.int64), test_indices=idx)
