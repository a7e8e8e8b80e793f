"""anogan_tf: AnoGAN (Schlegl et al., IPMI 2017, https://arxiv.org/abs/1703.05921) in TF2 / Keras 3,
and the anomaly detectors it is compared with, as model families on one protocol (`--model`).

Importing the package imports every model family (anogan_tf.models) and so registers all their
networks with Keras: `keras.models.load_model("generator.keras")` (or any family's
`<network>.keras`) needs no `custom_objects`.

As a library it changes no process-wide setting: no environment variable, not TensorFlow's
logging nor its kernels. Only the command-line tools (`python -m anogan_tf.<tool>`) choose them:
on x86-64 they turn TensorFlow's oneDNN kernels on (`TF_ENABLE_ONEDNN_OPTS=1` unless it is set;
see `_choose_onednn`), and they quiet TensorFlow so that they print their own progress and
results: they set `TF_CPP_MIN_LOG_LEVEL=2` unless it is set (TensorFlow's C++ errors still show),
and drop the few lines TensorFlow 2.21 prints on every run that are not problems (`_KNOWN_NOISE`),
which no environment variable reaches. See `_quiet_tensorflow`.
"""

import os as _os
import platform as _platform
import sys as _sys

# The lines of TensorFlow 2.21's C++ runtime that the command-line tools drop. Run on its own by
# the forwarding process (see `_quiet_tensorflow`), so it uses nothing but `re`.
_KNOWN_NOISE = r'''
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
_noise = {}
exec(_KNOWN_NOISE, _noise)  # noqa: S102  (one source for the forwarder and for tests)
_lines_to_show = _noise["lines_to_show"]

_FORWARDER = _KNOWN_NOISE + r'''
import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the tool, whose exit ends the input
for line in lines_to_show(sys.stdin.buffer):
  sys.stdout.buffer.write(line)
  sys.stdout.buffer.flush()
'''


def _run_as_a_command() -> bool:
  """True while `python -m anogan_tf.<tool>` imports this package on its way to the tool (runpy
  keeps sys.argv[0] at "-m" until the module is found)."""
  if _sys.argv[:1] != ["-m"]:
    return False
  argv = list(getattr(_sys, "orig_argv", ()))
  return any(a == "-m" and b.startswith("anogan_tf.") for a, b in zip(argv, argv[1:])) or any(
      a.startswith("-manogan_tf.") for a in argv)


def _choose_onednn() -> None:
  """For the command-line tools, before TensorFlow loads: TensorFlow turns its oneDNN kernels on
  by default only on some Intel CPUs; on the other x86-64 CPUs (AMD EPYC here) they are off, and
  with them mapping and training run much faster (`make bench`, README "Speed"). A program that
  imports the library decides for itself, as they also change the rounding of its numbers;
  TF_ENABLE_ONEDNN_OPTS=0 opts a command out."""
  if _platform.machine().lower() in ("x86_64", "amd64"):
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _quiet_tensorflow() -> None:
  """For the command-line tools, before TensorFlow loads: Python's sys.stderr keeps writing
  straight to the terminal, while file descriptor 2, where TensorFlow's C++ runtime writes, goes
  through a small forwarding process that drops the lines of _KNOWN_NOISE and passes every other
  line on at once. A process, not a thread: it outlives a crash of the tool, so even a fatal
  C++ error message reaches the terminal."""
  import subprocess
  _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # INFO and WARNING off, errors on
  try:
    _sys.stderr.flush()
    terminal = _os.dup(2)
  except (AttributeError, OSError, ValueError):  # no usable stderr: nothing to quiet
    return
  read, write = _os.pipe()
  try:
    forwarder = subprocess.Popen([_sys.executable, "-I", "-S", "-c", _FORWARDER], stdin=read,
                                 stdout=terminal, stderr=terminal, close_fds=True)
  except OSError:
    for fd in (read, write, terminal):
      _os.close(fd)
    return
  _os.close(read)
  encoding, errors = getattr(_sys.stderr, "encoding", None), getattr(_sys.stderr, "errors", None)
  stream = open(terminal, "w", buffering=1, encoding=encoding or "utf-8", errors=errors or "backslashreplace")
  _sys.stderr = stream
  _os.dup2(write, 2)
  _os.close(write)

  def finish():  # at exit: fd 2 back to the terminal closes the pipe; the forwarder drains it and ends
    try:
      stream.flush()
      _os.dup2(stream.fileno(), 2)
      forwarder.wait(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):
      pass
  import atexit
  atexit.register(finish)


if _run_as_a_command():
  _choose_onednn()
  _quiet_tensorflow()

from anogan_tf import models  # noqa: E402  (before mapper.py, which builds on models/base.py)
from anogan_tf.config import Config  # noqa: E402
from anogan_tf.errors import AnoganError  # noqa: E402
from anogan_tf.models.anogan.mapper import LatentMapper, MappingResult  # noqa: E402
from anogan_tf.models.base import ScoreResult  # noqa: E402
from anogan_tf.nn import losses  # noqa: E402
from anogan_tf.nn.networks import Discriminator, Encoder, Generator  # noqa: E402

__all__ = ["Config", "AnoganError", "Generator", "Discriminator", "Encoder", "LatentMapper", "MappingResult",
           "ScoreResult", "models", "losses"]
__version__ = "0.1.0"
