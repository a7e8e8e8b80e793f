"""Series of the UCR archives, in the archives' own layouts.

UCR Time Series Classification Archive (2018): `--dataset=ucr --data_dir=ROOT --ucr_name=NAME`
reads ROOT/NAME/NAME_TRAIN.tsv and ROOT/NAME/NAME_TEST.tsv, one series a line: the class label,
then the values, tab-separated (empty --data_dir: $ANOGAN_DATA_DIR/ucr). The one-class protocol of
Mauceri, Sweeney & McDermott 2020: train on the TRAIN series of the --normal_classes (labels as
the archive writes them: 1, 0, -1, ...), score every TEST series, anomalies = the other classes.

Scale: every series (training and test) goes through one affine map, x -> -0.8 + 1.6 (x - low) /
(high - low), clipped to [-1, 1], with (low, high) = --series_range, by default the minimum and
maximum of the normal TRAIN series (the only data a one-class model may look at; training records
them in flags.txt, so evaluate and score map the same way). The training series span [-0.8, 0.8],
inside the decoder's tanh; a test value beyond the training range by up to an eighth of it on
either side keeps its size, further out it is clipped at +-1.

UCR Time Series Anomaly Archive (KDD Cup 2021): `<id>_UCR_Anomaly_<name>_<train end>_<begin>_<end>.txt`,
one value a line; values [0, train end) are normal, the anomaly spans [begin, end) (0-based, end
excluded).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Tuple

import numpy as np

from anogan_tf.data.arrays import resolve_data_dir
from anogan_tf.data.splits import OneClassData, test_subset, validation_split
from anogan_tf.errors import AnoganError

TRAIN_MARGIN = 0.8  # the normal training series span [-TRAIN_MARGIN, TRAIN_MARGIN]


def ucr_root(data_dir: str = "") -> str:
  """--data_dir, else $ANOGAN_DATA_DIR/ucr."""
  if data_dir:
    return data_dir
  env = resolve_data_dir("")
  return os.path.join(env, "ucr") if env else ""


def ucr_paths(config) -> Tuple[str, str]:
  """(TRAIN, TEST) .tsv paths of --ucr_name under the UCR root."""
  root = ucr_root(config.data_dir)
  if not root:
    raise AnoganError("--dataset=ucr needs --data_dir=ROOT (the folder holding NAME/NAME_TRAIN.tsv) or "
                      "$ANOGAN_DATA_DIR with a ucr/ folder")
  folder = os.path.join(root, config.ucr_name)
  return (os.path.join(folder, f"{config.ucr_name}_TRAIN.tsv"), os.path.join(folder, f"{config.ucr_name}_TEST.tsv"))


def read_tsv(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """(labels (n,) int64, series (n, T) float64) of one UCR .tsv file, or a one-line AnoganError:
  missing file, a non-numeric value or label, a label that is not a whole number, series of
  different lengths (the archive pads its few variable-length datasets; pad or resample them),
  missing values (NaN), or no series at all."""
  if not os.path.isfile(path):
    raise AnoganError(f"UCR file {path} is missing; put the archive's NAME_TRAIN.tsv and NAME_TEST.tsv in "
                      "ROOT/NAME/ and pass --data_dir=ROOT --ucr_name=NAME")
  labels, rows = [], []
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      fields = line.strip().replace(",", "\t").split() if "\t" not in line else line.strip().split("\t")
      try:
        values = [float(v) for v in fields]
      except ValueError:
        bad = next(v for v in fields if not _is_number(v))
        raise AnoganError(f"{path} line {number}: '{bad[:20]}' is not a number; a UCR .tsv holds the label, then "
                          "the values, tab-separated") from None
      label = values[0]
      if not float(label).is_integer():
        raise AnoganError(f"{path} line {number}: the label {fields[0]} is not a whole number; the first value of a "
                          "line is its class label")
      if len(values) < 2:
        raise AnoganError(f"{path} line {number} has a label but no values; give each series its values")
      if rows and len(values) - 1 != len(rows[0]):
        raise AnoganError(f"{path} line {number} has {len(values) - 1} values but line 1 has {len(rows[0])}: the "
                          "series are ragged; pad or resample them to one length")
      labels.append(int(label))
      rows.append(values[1:])
  if not rows:
    raise AnoganError(f"{path} holds no series; it needs one line per series (label, then values)")
  series = np.asarray(rows, np.float64)
  if not np.isfinite(series).all():
    row = int(np.flatnonzero(~np.isfinite(series).all(axis=1))[0])
    raise AnoganError(f"{path} series {row + 1} has missing (NaN) or infinite values; fill or drop them")
  return np.asarray(labels, np.int64), series


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


def scale(series: np.ndarray, low: float, high: float) -> np.ndarray:
  """Raw values -> float32 in [-1, 1]: [low, high] to [-TRAIN_MARGIN, TRAIN_MARGIN], clipped."""
  x = -TRAIN_MARGIN + 2 * TRAIN_MARGIN * (np.asarray(series, np.float64) - low) / (high - low)
  return np.clip(x, -1.0, 1.0).astype(np.float32)


def _as_series(x: np.ndarray) -> np.ndarray:
  """(n, T) -> (n, T, 1): the archive's series are univariate."""
  return x[..., None] if x.ndim == 2 else x


def _normal_train(config):
  """(labels, series) of TRAIN, the positions of the normal classes' series, checked."""
  train_path, _ = ucr_paths(config)
  labels, series = read_tsv(train_path)
  present = sorted(set(labels.tolist()))
  missing = [c for c in config.normal_classes if c not in present]
  if missing:
    raise AnoganError(f"no TRAIN series of class {missing[0]} in {train_path} (its classes: "
                      f"{', '.join(map(str, present))}); choose --normal_classes among those")
  return labels, series


def series_range(config, labels, series) -> Tuple[float, float]:
  """(low, high): --series_range, else the min and max of the normal TRAIN series."""
  if config.series_range:
    return float(config.series_range[0]), float(config.series_range[1])
  normal = series[np.isin(labels, config.normal_classes)]
  low, high = float(normal.min()), float(normal.max())
  if not high > low:
    raise AnoganError(f"the normal TRAIN series of --ucr_name={config.ucr_name} are constant ({low:g}); a "
                      "one-class model needs varying series, or give --series_range=low,high")
  return low, high


def resolve_series(config):
  """`config` with --series_length, --series_features and --series_range made explicit from the
  normal TRAIN series (as flags.txt records them); other datasets' configs are returned as they are."""
  if config.dataset != "ucr":
    return config
  labels, series = _normal_train(config)
  if config.series_length and config.series_length != series.shape[1]:
    raise AnoganError(f"--series_length={config.series_length}, but the series of {config.ucr_name} have "
                      f"{series.shape[1]} steps; use --series_length=0 (the data's own)")
  if config.series_features not in (0, 1):
    raise AnoganError(f"--series_features={config.series_features}, but UCR series have 1 value per step; use "
                      "--series_features=0")
  return config.replace(series_length=series.shape[1], series_features=1,
                        series_range=series_range(config, labels, series))


def load_ucr(config, read_test: bool = True) -> OneClassData:
  """The normal classes' TRAIN series (minus --val_fraction held out) and the evaluation set:
  every TEST series (y = 1 for the other classes), or with --eval_split=val the held-out normals and
  as many TRAIN series of the other classes; all scaled by `scale`. `read_test=False` skips TEST."""
  train_path, test_path = ucr_paths(config)
  labels, series = _normal_train(config)
  low, high = series_range(config, labels, series)
  steps = config.series_length or series.shape[1]
  kept, held, anomalies = validation_split(labels, np.asarray(config.normal_classes), config.val_fraction,
                                           config.seed)
  if config.val_fraction > 0 and not len(held):
    raise AnoganError(f"--val_fraction={config.val_fraction} holds out no series of the {len(kept)} normal TRAIN "
                      "series; raise it or use --val_fraction=0")
  kept = kept[:config.train_examples] if config.train_examples else kept
  x_train = _as_series(scale(series[kept], low, high))
  x_val = _as_series(scale(series[held], low, high)) if len(held) else None
  if config.eval_split == "val":
    positions = np.sort(np.concatenate([held, anomalies]))
    y = (~np.isin(labels[positions], config.normal_classes)).astype(np.int64)
    idx = test_subset(y, config.test_examples, config.seed)
    return OneClassData(x_train=x_train, x_test=_as_series(scale(series[positions[idx]], low, high)), y_test=y[idx],
                        classes_test=labels[positions[idx]], test_indices=positions[idx], split="val", x_val=x_val)
  if not read_test:
    empty = np.zeros((0, steps, 1), np.float32)
    return OneClassData(x_train=x_train, x_test=empty, y_test=np.zeros(0, np.int64),
                        classes_test=np.zeros(0, np.int64), test_indices=np.zeros(0, np.int64), x_val=x_val)
  test_labels, test_series = read_tsv(test_path)
  if test_series.shape[1] != series.shape[1]:
    raise AnoganError(f"{test_path} has series of {test_series.shape[1]} steps, {train_path} of {series.shape[1]}; "
                      "both files must hold series of one length")
  y = (~np.isin(test_labels, config.normal_classes)).astype(np.int64)
  idx = test_subset(y, config.test_examples, config.seed)
  return OneClassData(x_train=x_train, x_test=_as_series(scale(test_series[idx], low, high)), y_test=y[idx],
                      classes_test=test_labels[idx], test_indices=idx, x_val=x_val)


def read_series_csv(path: str) -> np.ndarray:
  """Your own univariate series from a text file: one series a line, values separated by commas
  (or tabs or spaces), no label, no header -> (n, T) float64; a one-line AnoganError for a
  non-numeric value, ragged lines, NaN or no series."""
  rows = []
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, start=1):
      fields = [v for v in re.split(r"[,\t ]+", line.strip()) if v]
      if not fields:
        continue
      if not all(_is_number(v) for v in fields):
        bad = next(v for v in fields if not _is_number(v))
        raise AnoganError(f"{path} line {number}: '{bad[:20]}' is not a number; write one series a line, its values "
                          "separated by commas, with no header")
      if rows and len(fields) != len(rows[0]):
        raise AnoganError(f"{path} line {number} has {len(fields)} values but line 1 has {len(rows[0])}: the series "
                          "are ragged; give every series the model's length")
      rows.append([float(v) for v in fields])
  if not rows:
    raise AnoganError(f"{path} holds no series; write one series a line, values separated by commas")
  series = np.asarray(rows, np.float64)
  if not np.isfinite(series).all():
    row = int(np.flatnonzero(~np.isfinite(series).all(axis=1))[0])
    raise AnoganError(f"{path} series {row + 1} has missing (NaN) or infinite values; fill or drop them")
  return series


# --- the UCR Time Series Anomaly Archive

_ANOMALY_NAME = re.compile(r"^(\d+)_UCR_Anomaly_(.+)_(\d+)_(\d+)_(\d+)\.txt$")


@dataclasses.dataclass(frozen=True)
class AnomalySeries:
  """One series of the anomaly archive: values (n,), normal training part [0, train_end), the
  anomaly [begin, end) (0-based, end excluded)."""

  name: str
  values: np.ndarray
  train_end: int
  begin: int
  end: int


def parse_anomaly_name(path: str) -> Tuple[str, int, int, int]:
  """(name, train end, anomaly begin, anomaly end) from an anomaly-archive file name, or AnoganError."""
  match = _ANOMALY_NAME.match(os.path.basename(path))
  if not match:
    raise AnoganError(f"{os.path.basename(path)} is not named as the UCR Anomaly Archive names its files "
                      "(<id>_UCR_Anomaly_<name>_<train end>_<anomaly begin>_<anomaly end>.txt)")
  _, name, train_end, begin, end = match.groups()
  train_end, begin, end = int(train_end), int(begin), int(end)
  if not 0 < train_end <= begin < end:
    raise AnoganError(f"{os.path.basename(path)}: training end {train_end}, anomaly [{begin}, {end}) are not in "
                      "order (0 < training end <= begin < end)")
  return name, train_end, begin, end


def read_anomaly_series(path: str) -> AnomalySeries:
  """An anomaly-archive file: one value a line (some files put them on one line, space-separated)."""
  name, train_end, begin, end = parse_anomaly_name(path)
  if not os.path.isfile(path):
    raise AnoganError(f"anomaly series {path} is missing; check the path")
  with open(path) as f:
    fields = f.read().split()
  try:
    values = np.asarray([float(v) for v in fields], np.float64)
  except ValueError:
    bad = next(v for v in fields if not _is_number(v))
    raise AnoganError(f"{path}: '{bad[:20]}' is not a number; the file holds one value a line") from None
  if len(values) < end or not np.isfinite(values).all():
    raise AnoganError(f"{path} has {len(values)} values (finite: {bool(np.isfinite(values).all())}), but its name "
                      f"puts the anomaly at [{begin}, {end}); use the archive's file as it is")
  return AnomalySeries(name=name, values=values, train_end=train_end, begin=begin, end=end)
