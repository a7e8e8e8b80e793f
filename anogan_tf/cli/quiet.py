"""How a program that runs anogan_tf keeps TensorFlow's start-up notices off its terminal.

The command-line tools (`python -m anogan_tf.<tool>`) call `quiet_tensorflow()` as the package
loads; scripts that run the library in their own process (experiments/*.py) call it themselves,
before anything imports TensorFlow. Importing the package only quiets a command: a library user's
program keeps TensorFlow's logging as it is.

Uses nothing but the standard library and imports nothing of the package: a script needs it
before TensorFlow loads, and `import anogan_tf` loads TensorFlow, so such a script loads this file
by its path (experiments/reproduce.py's `quiet_tensorflow`).
"""

from __future__ import annotations

import os
import sys

# The lines of TensorFlow 2.21's C++ runtime that the command-line tools drop, which no
# environment variable reaches. Run on its own by the forwarding process (see `quiet_tensorflow`),
# so it uses nothing but `re`.
KNOWN_NOISE = r'''
import re

NOTICES = re.compile(  # printed at every start, before TF_CPP_MIN_LOG_LEVEL is read
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. "
    r"|I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
    r"|I\d{4} [\d:.]+ +\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized "
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$"
    # Grappler's remapper cannot fuse Conv2D + BiasAdd + LeakyRelu when LeakyRelu's gradient also
    # reads the BiasAdd (every G and D step and every mapping iteration), logs this at ERROR and
    # leaves the graph as it was: harmless, and what every measured run ran with.
    r"|E\d{4} [\d:.]+ +\d+ meta_optimizer\.cc:\d+\] remapper failed: INVALID_ARGUMENT: Mutation::Apply "
    r"error: fanout '[^']*/LeakyReluGrad' exist for missing node '[^']*/BiasAdd'\.$")
NO_DRIVER = "cudart_stub.cc"  # its "Could not find cuda drivers" notice; then cuInit's failure is expected
CUINIT = re.compile(r"E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: ")


def lines_to_show(lines):
  """Yields the lines (bytes) that are not known TensorFlow noise."""
  no_driver = False
  for line in lines:
    text = line.decode("utf-8", "replace")
    no_driver = no_driver or (NO_DRIVER in text and NOTICES.match(text) is not None)
    if NOTICES.match(text) or (no_driver and CUINIT.match(text)):
      continue
    yield line
'''
_noise: dict = {}
exec(KNOWN_NOISE, _noise)  # noqa: S102  (one source for the forwarder and for tests)
lines_to_show = _noise["lines_to_show"]

_FORWARDER = KNOWN_NOISE + r'''
import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the tool, whose exit ends the input
for line in lines_to_show(sys.stdin.buffer):
  sys.stdout.buffer.write(line)
  sys.stdout.buffer.flush()
'''


def run_as_a_command() -> bool:
  """True while `python -m anogan_tf.<tool>` imports this package on its way to the tool (runpy
  keeps sys.argv[0] at "-m" until the module is found)."""
  if sys.argv[:1] != ["-m"]:
    return False
  argv = list(getattr(sys, "orig_argv", ()))
  return any(a == "-m" and b.startswith("anogan_tf.") for a, b in zip(argv, argv[1:])) or any(
      a.startswith("-manogan_tf.") for a in argv)


def quiet_tensorflow() -> None:
  """Call once, before TensorFlow loads: Python's sys.stderr keeps writing straight to the
  terminal, while file descriptor 2, where TensorFlow's C++ runtime writes, goes through a small
  forwarding process that drops the lines of KNOWN_NOISE and passes every other line on at once.
  A process, not a thread: it outlives a crash of the program, so even a fatal C++ error message
  reaches the terminal. Also sets TF_CPP_MIN_LOG_LEVEL=2 unless it is set (INFO and WARNING off,
  TensorFlow's errors still show)."""
  import subprocess
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    sys.stderr.flush()
    terminal = os.dup(2)
  except (AttributeError, OSError, ValueError):  # no usable stderr: nothing to quiet
    return
  read, write = os.pipe()
  try:
    forwarder = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FORWARDER], stdin=read,
                                 stdout=terminal, stderr=terminal, close_fds=True)
  except OSError:
    for fd in (read, write, terminal):
      os.close(fd)
    return
  os.close(read)
  encoding, errors = getattr(sys.stderr, "encoding", None), getattr(sys.stderr, "errors", None)
  stream = open(terminal, "w", buffering=1, encoding=encoding or "utf-8", errors=errors or "backslashreplace")
  sys.stderr = stream
  os.dup2(write, 2)
  os.close(write)

  def finish():  # at exit: fd 2 back to the terminal closes the pipe; the forwarder drains it and ends
    try:
      stream.flush()
      os.dup2(stream.fileno(), 2)
      forwarder.wait(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):
      pass
  import atexit
  atexit.register(finish)

