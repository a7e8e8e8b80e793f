"""Crash-safe file writing: every output is written to a temporary name, then renamed."""

from __future__ import annotations

import contextlib
import os


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


def save_figure(fig, path: str) -> None:
  import matplotlib.pyplot as plt
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
  plt.close(fig)
