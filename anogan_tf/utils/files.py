"""Crash-safe file writing and workdir locks.

Every output is written to a temporary name, then renamed: a kill leaves either the old file or
the new one, never half of one. Locks are `flock`s on a directory's descriptor: the kernel drops
them when the process dies (even by SIGKILL), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
from typing import Sequence

from anogan_tf.errors import AnoganError

try:
  import fcntl
except ImportError:  # Windows: no flock; runs are simply not locked there
  fcntl = None


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path` (same extension); renames it onto `path` on success."""
  directory, name = os.path.split(os.path.abspath(path))
  stem, ext = os.path.splitext(name)
  tmp = os.path.join(directory, f".{stem}.tmp{os.getpid()}{ext}")
  try:
    yield tmp
    if os.path.isfile(tmp):
      with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


def exact(value) -> str:
  """`value` as text that reads back bit for bit: the shortest decimal that float() turns into the
  same float64, which for a float32 is its exact value widened. Scores written with fewer digits
  (9 significant digits are needed for a float32) can collapse two different scores into one, so
  metrics recomputed from a CSV would differ from those computed in memory."""
  return repr(float(value))


def write_scores_csv(path: str, header: Sequence[str], rows) -> None:
  """A CSV written with the csv module (names with commas or quotes read back intact), atomically.
  Format floats in `rows` with `exact`."""
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
      writer = csv.writer(f, lineterminator="\n")
      writer.writerow(header)
      writer.writerows(rows)


def save_figure(fig, path: str) -> None:
  import matplotlib.pyplot as plt
  try:
    with atomic_path(path) as tmp:
      fig.savefig(tmp, dpi=100, bbox_inches="tight")
  finally:
    plt.close(fig)


class DirectoryLock:
  """An exclusive, non-blocking lock on an existing directory, held until `release()`.

  A second process asking for the same lock gets AnoganError(`busy_message`) at once.
  """

  def __init__(self, directory: str, busy_message: str):
    self.fd = None
    if fcntl is None:
      return
    self.fd = os.open(directory, os.O_RDONLY)
    try:
      fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      os.close(self.fd)
      self.fd = None
      raise AnoganError(busy_message) from None

  def release(self) -> None:
    if self.fd is not None:
      os.close(self.fd)  # closing the descriptor drops the flock
      self.fd = None

  def __del__(self):
    self.release()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def check_folder_can_be_made(path: str, name: str, flag: str) -> None:
  """Read-only: `path` is a folder or can be created (no file at it or on the way to it).
  `name` starts the messages ("workdir", "--output"); `flag` is the one to change."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise AnoganError(f"{name} {path} is a file, not a folder; choose another {flag}")
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise AnoganError(f"cannot create {name} {path}: {parent} is a file, not a folder; choose another {flag}")
