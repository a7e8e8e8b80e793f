import os
import platform
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")

if not os.environ.get("ANOGAN_DATA_DIR") and os.path.isdir(SHARED_DATA):
  os.environ["ANOGAN_DATA_DIR"] = SHARED_DATA

# The kernels `python -m anogan_tf.*` choose (anogan_tf._choose_onednn), which the library leaves
# to its host program: what the tests compute here and what the commands they start compute use
# the same ones. Before any test module imports TensorFlow.
if platform.machine().lower() in ("x86_64", "amd64"):
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@pytest.fixture
def mnist_dir():
  path = os.environ.get("ANOGAN_DATA_DIR", "")
  if not os.path.isfile(os.path.join(path, "mnist.npz")):
    pytest.skip("needs mnist.npz in $ANOGAN_DATA_DIR (CI sets it to ../shared/data)")
  return path


def run_cli(*args, cwd=ROOT, env=None, timeout=600):
  """Runs `python -m anogan_tf.<tool> ...`; returns the CompletedProcess (text output)."""
  return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                        timeout=timeout, env={**os.environ, **(env or {})})


def synthetic_images(n, shape=(28, 28, 1), seed=0):
  """Blurry blobs in [-1, 1]: a cheap stand-in for digits."""
  rng = np.random.default_rng(seed)
  h, w, c = shape
  yy, xx = np.mgrid[0:h, 0:w]
  centres = rng.uniform(0.3, 0.7, (n, 2)) * (h, w)
  radius = rng.uniform(3, 6, (n, 1, 1))
  d = np.sqrt((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2)
  images = np.clip(1.5 - d / radius, 0, 1) * 2 - 1
  return np.repeat(images[..., None], c, axis=-1).astype(np.float32)


# Bad-input harness (tests/test_reliability.py, tests/test_cli.py): one process per tool runs every
# case through the command's main(argv), as `python -m anogan_tf.<tool>` does: each call parses its
# own flags, so the cases share nothing but the process.
HARNESS = r'''
import contextlib, importlib, io, json, sys, traceback
tool, cases_path, out_path = sys.argv[1:]
module = importlib.import_module("anogan_tf." + tool)
results = []
for argv in json.load(open(cases_path)):
  err, out, code = io.StringIO(), io.StringIO(), 0
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
    try:
      code = module.main(["anogan_tf." + tool] + argv)
    except SystemExit as e:
      code = e.code or 0
    except BaseException:
      traceback.print_exc()
      code = "uncaught exception"
  results.append({"code": code, "stderr": err.getvalue(), "stdout": out.getvalue()})
json.dump(results, open(out_path, "w"))
'''


def run_command(tool, *args, cwd=ROOT):
  """Runs `python -m anogan_tf.<tool> ...` in this process (its main(argv)): a CompletedProcess
  with its exit code and what it printed. For tests of what a command does; the process itself
  (exit codes seen by a shell, TensorFlow's own stderr, signals) is tested with run_cli."""
  import contextlib
  import importlib
  import io
  module = importlib.import_module(tool)
  out, err = io.StringIO(), io.StringIO()
  old = os.getcwd()
  os.chdir(cwd)
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = module.main([tool, *args])
  finally:
    os.chdir(old)
  return subprocess.CompletedProcess([tool, *args], code, out.getvalue(), err.getvalue())

