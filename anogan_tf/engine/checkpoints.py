"""Numbered tf.train checkpoints in a workdir, written crash-safely (a kill leaves the previous one
intact) and restored on resume."""

from __future__ import annotations

import glob
import os
import re
import shutil
from typing import Optional

import tensorflow as tf

from anogan_tf.errors import AnoganError
from anogan_tf.utils.faults import fault_point
from anogan_tf.utils.files import write_text

CHECKPOINTS_KEPT = 2


def _checkpoint_number(path: str) -> int:
  match = re.search(r"ckpt-(\d+)$", path)
  return int(match.group(1)) if match else -1


def latest_checkpoint(directory: str) -> Optional[str]:
  """The last committed checkpoint prefix in `directory`, or None if training never saved one.

  Unlike tf.train.latest_checkpoint, a damaged or dangling state file is an error, not None:
  silently starting over would throw the run's history away.
  """
  state = os.path.join(directory, "checkpoint")
  if not os.path.exists(state):
    return None
  fix = (f"delete {directory} to train from scratch in this workdir, or pass --overwrite to start over")
  try:
    with open(state) as f:
      match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', f.read(), re.MULTILINE)
  except (OSError, UnicodeDecodeError) as e:
    raise AnoganError(f"checkpoint state {state} cannot be read ({type(e).__name__}); {fix}") from None
  if not match:
    raise AnoganError(f"checkpoint state {state} is damaged (no model_checkpoint_path); {fix}")
  path = match.group(1)
  path = path if os.path.isabs(path) else os.path.join(directory, path)
  if not os.path.exists(path + ".index"):
    raise AnoganError(f"checkpoint {path} named by {state} is missing; {fix}")
  return path


def save_checkpoint(checkpoint: tf.train.Checkpoint, directory: str, number: int,
                    point: str = "checkpoint_written") -> str:
  """Writes ckpt-<number>, then commits it by atomically rewriting the state file.

  A kill before the commit leaves the previous checkpoint as the latest; the half-written
  files are overwritten by the next save of that number. Keeps the last CHECKPOINTS_KEPT.
  """
  os.makedirs(directory, exist_ok=True)
  checkpoint.save_counter.assign(number)  # as CheckpointManager does; restore() expects it
  path = checkpoint.write(os.path.join(directory, f"ckpt-{number}"))
  fault_point(point, number - 1)
  numbers = sorted({_checkpoint_number(p[:-len(".index")]) for p in glob.glob(os.path.join(directory, "ckpt-*.index"))}
                   | {number})
  kept = [n for n in numbers if n <= number][-CHECKPOINTS_KEPT:]
  lines = [f'model_checkpoint_path: "ckpt-{number}"'] + [f'all_model_checkpoint_paths: "ckpt-{n}"' for n in kept]
  write_text(os.path.join(directory, "checkpoint"), "\n".join(lines) + "\n")
  for n in numbers:
    if n not in kept:
      stale_files = (glob.glob(os.path.join(directory, f"ckpt-{n}.*"))
                     + glob.glob(os.path.join(directory, f"ckpt-{n}_temp*")))
      for stale in stale_files:
        shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)
  return path


def restore_checkpoint(driver, directory: str) -> int:
  """Restores the latest checkpoint into `driver` (a Driver or a StageDriver); returns the
  next epoch to train (0: none)."""
  path = latest_checkpoint(directory)
  if path is None:
    return 0
  try:
    driver.checkpoint().restore(path).assert_existing_objects_matched()
  except Exception as e:  # TF reports damage as OpError, IndexError ("Read less bytes"), ValueError...
    if _readable(path):
      raise AnoganError(f"checkpoint {path} does not match the networks these settings build "
                        f"({type(e).__name__}): written by other settings or an older anogan_tf; pass --overwrite "
                        "to start over, or train in a new workdir") from None
    raise AnoganError(f"checkpoint {path} cannot be read ({type(e).__name__}: damaged or truncated); "
                      f"delete {directory} to train from scratch in this workdir, or pass --overwrite "
                      "to start over") from None
  return int(driver.epoch.numpy())


def _readable(path: str) -> bool:
  """Whether every tensor of the checkpoint at `path` reads back: then a failed restore means the
  checkpoint holds other networks than the driver's, not a damaged file."""
  try:
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
    return True
  except Exception:  # noqa: BLE001 (damage shows as any of TF's errors)
    return False
