"""How many images to process at once: the largest batch whose activations fit in a share of the
available memory. Used by every scorer whose chunk size is automatic (--map_batch_size=0)."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

MAX_AUTO_BATCH = 1024  # `make bench`: throughput is flat from 256 to 1024 images per batch
MEMORY_SHARE = 0.25  # of the available memory, for the automatic batch size
BYTES_PER_ACTIVATION = 8  # float32, twice: measured RSS grows 170-240 KB per seed-000 image (42k floats)


def available_memory_bytes() -> Optional[int]:
  """MemAvailable from /proc/meminfo (Linux), else None."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def chain_floats(layers: Iterable, input_shape: Sequence[int], stop_at: Optional[str] = None) -> int:
  """Floats one example keeps through a chain of built layers: the sum of their output sizes, up to
  and including the layer named `stop_at`. `input_shape` is one example's shape (no batch axis)."""
  shape, total = (1,) + tuple(input_shape), 0
  for layer in layers:
    shape = layer.compute_output_shape(shape)
    total += int(np.prod(shape[1:]))
    if layer.name == stop_at:
      break
  return total


def fit_batch_size(floats_per_image: int, available_bytes: Optional[int] = None, largest: int = MAX_AUTO_BATCH) -> int:
  """The largest power of two up to `largest` (MAX_AUTO_BATCH) whose activations (`floats_per_image`
  each) fit in MEMORY_SHARE of the available memory; `largest` when that is unknown."""
  available = available_memory_bytes() if available_bytes is None else available_bytes
  if available is None:
    return largest
  fits = int(MEMORY_SHARE * available // (BYTES_PER_ACTIVATION * max(int(floats_per_image), 1)))
  return max(1, min(largest, 1 << max(fits, 1).bit_length() - 1))
