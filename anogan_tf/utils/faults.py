"""Test-only fault injection: makes a crash land at a named point, deterministically.

Does nothing unless the environment variable ANOGAN_TEST_HOOK is set; users never set it.
tests/test_reliability.py uses it to SIGKILL training and evaluation at precise moments and to
poison a loss with NaN. Format: comma-separated `point[@epoch]=action`, e.g.

  ANOGAN_TEST_HOOK="checkpoint_written@2=kill"   # SIGKILL after ckpt data is written, epoch 2
  ANOGAN_TEST_HOOK="epoch@1=pause"               # touch $ANOGAN_TEST_HOOK_MARKER, then sleep
  ANOGAN_TEST_HOOK="loss@3=nan"                  # the caller replaces epoch 3's losses with NaN

Actions: kill (the process SIGKILLs itself: no cleanup runs, like `kill -9`), pause (writes
the marker file named by ANOGAN_TEST_HOOK_MARKER and sleeps until killed from outside, so a
test can send the SIGKILL itself), nan (returned to the caller, which acts on it).
Points (epoch = 0-based index of the epoch being trained):
  train:    epoch, history, checkpoint_written, export, loss; the warm-start encoder's epochs:
            encoder_epoch, encoder_history, encoder_checkpoint_written, encoder_export, encoder_loss
  evaluate: map, eval_write
"""

from __future__ import annotations

import os
import signal
import time
from typing import Optional

HOOK_ENV = "ANOGAN_TEST_HOOK"
MARKER_ENV = "ANOGAN_TEST_HOOK_MARKER"


def fault_point(point: str, epoch: Optional[int] = None) -> Optional[str]:
  """Runs the action the test hook assigns to `point` (at `epoch`); returns it, or None."""
  spec = os.environ.get(HOOK_ENV)
  if not spec:
    return None
  for entry in spec.split(","):
    where, _, action = entry.strip().partition("=")
    name, _, at = where.partition("@")
    if name != point or (at and (epoch is None or int(at) != epoch)):
      continue
    if action == "kill":
      os.kill(os.getpid(), signal.SIGKILL)
    if action == "pause":
      marker = os.environ.get(MARKER_ENV)
      if marker:
        with open(marker, "w") as f:
          f.write(f"{os.getpid()} {point}\n")
      while True:
        time.sleep(1)
    return action
  return None
