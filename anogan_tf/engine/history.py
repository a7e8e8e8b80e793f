"""history.csv (one row per epoch: the family's losses and seconds), read back on resume, and the
collapse check that watches it."""

from __future__ import annotations

import csv
import os
from typing import List, Optional, Sequence

from anogan_tf.utils.files import atomic_path

# A discriminator whose loss stays below COLLAPSE_D_LOSS for COLLAPSE_EPOCHS epochs in a row
# wins outright: the generator's gradients vanish and training makes no more progress.
COLLAPSE_D_LOSS = 1e-3


COLLAPSE_EPOCHS = 5


def history_fields(loss_names: Sequence[str]) -> tuple:
  """history.csv's columns: epoch, the family's losses, seconds (anogan: epoch, g_loss, d_loss,
  d_acc, seconds)."""
  return ("epoch",) + tuple(loss_names) + ("seconds",)


def read_history(path: str) -> List[dict]:
  """history.csv's rows as {column: number}, its columns whatever its header names."""
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    rows = []
    reader = csv.DictReader(f)
    for row in reader:
      try:
        rows.append({"epoch": int(row["epoch"]), **{k: float(row[k]) for k in reader.fieldnames if k != "epoch"}})
      except (KeyError, TypeError, ValueError):
        break  # a torn last line from a crash: drop it and everything after
    return rows


def _history_writer(f, fields: Sequence[str]):
  return csv.DictWriter(f, fields, extrasaction="ignore", lineterminator="\n")


def write_history(path: str, rows: List[dict], fields: Sequence[str]) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline="") as f:
      writer = _history_writer(f, fields)
      writer.writeheader()
      writer.writerows(rows)


def append_history(path: str, row: dict, fields: Sequence[str]) -> None:
  with open(path, "a", newline="") as f:
    _history_writer(f, fields).writerow(row)
    f.flush()
    os.fsync(f.fileno())


def collapse_warning(history: List[dict], loss: str = "d_loss") -> Optional[str]:
  """A warning when the discriminator's `loss` stayed below COLLAPSE_D_LOSS for the last
  COLLAPSE_EPOCHS epochs (reported once per streak: exactly when the streak reaches that length),
  else None."""
  streak = 0
  for row in reversed(history):
    if row[loss] >= COLLAPSE_D_LOSS:
      break
    streak += 1
  if streak != COLLAPSE_EPOCHS:
    return None
  first = history[-streak]["epoch"] + 1
  return (f"the discriminator has collapsed: {loss} < {COLLAPSE_D_LOSS:g} for {streak} epochs in a row "
          f"(epochs {first}-{history[-1]['epoch'] + 1}), so the generator gets no useful gradient; "
          "look at the samples, and if they stopped improving restart with --overwrite and e.g. a lower "
          "--lr, --d_dropout or --g_steps")
