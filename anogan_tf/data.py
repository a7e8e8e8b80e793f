"""Datasets for the one-class protocol: train on the normal classes, score the whole test split.

Arrays come from `<data_dir>/<name>.npz` (Keras' layout: x_train, y_train, x_test, y_test) when
`--data_dir` or $ANOGAN_DATA_DIR names a folder, otherwise from `keras.datasets` (download+cache).
Images are scaled to [-1, 1] as float32 (batch, h, w, c).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Sequence

import numpy as np

from anogan_tf.errors import AnoganError

DATA_DIR_ENV = "ANOGAN_DATA_DIR"


@dataclasses.dataclass
class OneClassData:
  x_train: np.ndarray  # (n_train, h, w, c) float32 in [-1, 1], normal classes only
  x_test: np.ndarray  # (n_test, h, w, c) float32 in [-1, 1]
  y_test: np.ndarray  # (n_test,) int: 1 = anomaly (not a normal class), 0 = normal
  classes_test: np.ndarray  # (n_test,) the original class labels
  test_indices: np.ndarray  # (n_test,) positions in the original test split


def resolve_data_dir(data_dir: str = "") -> str:
  return data_dir or os.environ.get(DATA_DIR_ENV, "")


def load_arrays(name: str, data_dir: str = ""):
  """(x_train, y_train), (x_test, y_test) as uint8 images and flat integer labels."""
  data_dir = resolve_data_dir(data_dir)
  if data_dir:
    path = os.path.join(data_dir, f"{name}.npz")
    if not os.path.isdir(data_dir):
      raise AnoganError(f"data folder {data_dir} does not exist; fix --data_dir or ${DATA_DIR_ENV}")
    if not os.path.isfile(path):
      raise AnoganError(f"dataset file {path} is missing; put {name}.npz (x_train, y_train, x_test, y_test) "
                        f"there or unset --data_dir/${DATA_DIR_ENV} to download it")
    try:
      with np.load(path, allow_pickle=False) as f:
        arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except KeyError as e:
      raise AnoganError(f"{path} has no array {e}; it needs x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
      raise AnoganError(f"{path} is not a readable .npz file ({type(e).__name__}); replace it with a good copy") from None
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
  return (x_train, np.asarray(y_train).reshape(-1)), (x_test, np.asarray(y_test).reshape(-1))


def to_float_images(x: np.ndarray, expected_shape: Sequence[int] = None, source: str = "images") -> np.ndarray:
  """uint8 (n, h, w[, c]) in [0, 255] -> float32 (n, h, w, c) in [-1, 1], checked."""
  x = np.asarray(x)
  if x.ndim == 3:
    x = x[..., None]
  if expected_shape is not None and (x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected_shape)):
    raise AnoganError(f"{source} have shape {tuple(x.shape[1:])} per image, expected {tuple(expected_shape)}; "
                      "use a dataset of that image size or another --dataset")
  x = x.astype(np.float32)
  if x.size and not np.isfinite(x).all():
    raise AnoganError(f"{source} contain NaN or inf; repair the data file")
  if x.size and (x.min() < 0 or x.max() > 255):
    raise AnoganError(f"{source} have values in [{x.min():.3g}, {x.max():.3g}], expected 0..255 pixels")
  return x / 127.5 - 1.0  # the seed's images * 2 - 1 with images in [0, 1]


def test_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
  """A fixed, seeded, sorted subset of n test positions holding both labels (when both exist)."""
  total = len(labels)
  if n <= 0 or n >= total:
    return np.arange(total)
  order = np.random.default_rng(seed).permutation(total)
  chosen = order[:n]
  for label in (0, 1):  # swap one in if a label is missing but present in the split
    if not np.any(labels[chosen] == label) and np.any(labels == label):
      chosen[-1 if label else 0] = order[n:][labels[order[n:]] == label][0]
  return np.sort(chosen)


def load_one_class(config) -> OneClassData:
  (x_train, y_train), (x_test, y_test) = load_arrays(config.dataset, config.data_dir)
  normal = np.asarray(config.normal_classes)
  present = np.unique(y_train)
  missing = [c for c in normal if c not in present]
  if missing:
    raise AnoganError(f"no training images of class {missing[0]} in {config.dataset} (classes {present.min()}..{present.max()}); "
                      "choose --normal_classes among those")
  shape = config.image_shape
  x_train = to_float_images(x_train[np.isin(y_train, normal)], shape, f"{config.dataset} training images")
  labels = (~np.isin(y_test, normal)).astype(np.int64)
  idx = test_subset(labels, config.test_examples, config.seed)
  x_test = to_float_images(x_test[idx], shape, f"{config.dataset} test images")
  return OneClassData(x_train=x_train, x_test=x_test, y_test=labels[idx],
                      classes_test=y_test[idx].astype(np.int64), test_indices=idx)
