"""The one-class protocol's data: what a run trains on and scores (`OneClassData`), and the seeded
splits that choose it (the held-out normals, the test subset)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np


@dataclasses.dataclass
class OneClassData:
  """What a run trains on and scores."""

  # (n_train, h, w, c) float32 in [-1, 1], normal classes only; a folder's: data.folder.ImageFiles, read while training
  x_train: np.ndarray
  x_test: np.ndarray  # (n_test, h, w, c) float32 in [-1, 1]
  y_test: np.ndarray  # (n_test,) int: 1 = anomaly (not a normal class), 0 = normal
  # (n_test,) the original class labels (a folder's: the test/ folder names, "good" or the defect)
  classes_test: np.ndarray
  test_indices: np.ndarray  # (n_test,) positions in the original test split (train split for split="val")
  split: str = "test"  # what x_test holds: "test" (the test split) or "val" (the validation set)
  # Folder datasets only:
  names: Optional[Sequence[str]] = None  # (n_test,) each test image's path under --data_dir
  masks: Optional[np.ndarray] = None  # (n_test, h, w) bool: the anomalous pixels, when every defect has masks
  pixel_note: str = ""  # why there are no masks (no pixel metrics), for metrics.json
  # The held-out normals the threshold is computed on, when the caller gives the data itself
  # (None: the threshold reloads them with --val_fraction, as evaluate's --eval_split=val does).
  x_val: Optional[np.ndarray] = None
  # Clip datasets: (n_test, clip_length) int, 1 = an abnormal frame (a clip's y_test: any of its frames)
  frame_labels: Optional[np.ndarray] = None


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


def validation_split(y_train: np.ndarray, normal, fraction: float, seed: int):
  """Positions in the train split: (normals kept for training, held-out normals, validation anomalies).

  A seeded `fraction` of the normal classes' training images is held out of training; the
  validation anomalies are as many train-split images of the other classes, drawn uniformly
  (so every other class appears in its share). Nothing of the test split is touched, so
  settings can be tuned on this set and the test split run once.
  """
  is_normal = np.isin(y_train, normal)
  normal_positions = np.flatnonzero(is_normal)
  rng = np.random.default_rng([seed, 7919])  # its own stream: the split does not shift other draws
  n_val = int(round(fraction * len(normal_positions)))
  held = np.zeros(len(normal_positions), bool)
  held[rng.permutation(len(normal_positions))[:n_val]] = True
  others = np.flatnonzero(~is_normal)
  anomalies = np.sort(rng.permutation(others)[:min(n_val, len(others))])
  return normal_positions[~held], normal_positions[held], anomalies
