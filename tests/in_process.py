"""A stand-in for experiments/reproduce.py's `run_logged` that runs each command through its
`main(argv)` in the calling process instead of a new interpreter, its output appended to the run's
log as run_logged does: for the driver tests (test_reproduce, test_compare) that have tested the
commands as processes once already."""

import contextlib
import importlib
import shlex
import time


def run_logged(args, log_path):
  began = time.perf_counter()
  with open(log_path, "a") as log:
    log.write(f"\n$ {shlex.join(args)}\n")
    log.flush()
    with contextlib.redirect_stdout(log):
      code = importlib.import_module(args[0]).main(args)
  if code != 0:
    raise SystemExit(f"error: `{shlex.join(args)}` failed (exit {code})")
  return time.perf_counter() - began
