"""What this CPU offers bfloat16: AMX tiles, AVX512-BF16 instructions, or neither.

Read from /proc/cpuinfo's flags (Linux); elsewhere, or when the file cannot be read, "unknown".
`make bench`, evaluate's metrics.json and the notice of `--precision=bfloat16` report it: a CPU
without bf16 instructions converts every bfloat16 operation to float32 and back, which is
slower than float32 itself.
"""

from __future__ import annotations

import functools
import platform
from typing import Dict, Tuple

CPUINFO = "/proc/cpuinfo"
# (support, the cpuinfo flags that give it), fastest first
_LEVELS = (("amx", ("amx_bf16", "amx_tile")), ("avx512_bf16", ("avx512_bf16",)))
FAST = tuple(level for level, _ in _LEVELS)  # the values of bf16_support() where bfloat16 runs fast


def parse_cpuinfo(text: str) -> Tuple[str, frozenset]:
  """(model name, flags) of the first processor listed in /proc/cpuinfo's `text`."""
  model, flags = "", frozenset()
  for line in text.splitlines():
    key, _, value = line.partition(":")
    key = key.strip()
    if key == "model name" and not model:
      model = value.strip()
    elif key == "flags" and not flags:
      flags = frozenset(value.split())
  return model, flags


def support_from_flags(flags) -> str:
  """"amx", "avx512_bf16" or "none" for a set of cpuinfo flags."""
  for level, needed in _LEVELS:
    if all(flag in flags for flag in needed):
      return level
  return "none"


@functools.lru_cache(maxsize=None)
def _read() -> Tuple[str, str]:
  try:
    with open(CPUINFO, encoding="utf-8", errors="replace") as f:
      model, flags = parse_cpuinfo(f.read())
  except OSError:
    return platform.processor() or platform.machine() or "unknown", "unknown"
  return model or platform.processor() or "unknown", support_from_flags(flags)


def cpu_model() -> str:
  """The CPU's model name (cpuinfo's "model name"; elsewhere what `platform` says)."""
  return _read()[0]


def bf16_support() -> str:
  """"amx" (AMX tiles with bf16), "avx512_bf16", "none", or "unknown" where cpuinfo is not readable."""
  return _read()[1]


def report() -> Dict[str, str]:
  """{"cpu": model name, "cpu_bf16": support}: what metrics.json and the bench record."""
  return {"cpu": cpu_model(), "cpu_bf16": bf16_support()}
