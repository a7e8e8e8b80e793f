import collections
import json
import os
import platform
import signal
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

# pytest-xdist's workers share the cores: each worker's TensorFlow (and the commands it starts) gets
# its share of threads, so that the workers do not oversubscribe the cores (TensorFlow's thread pool
# spins while it waits for work). Alone (no workers) TensorFlow takes every core, as it chooses.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKERS > 1:
  _threads = str(max(1, (os.cpu_count() or 1) // _WORKERS))
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _threads)
  os.environ.setdefault("TF_NUM_INTEROP_THREADS", _threads)


@pytest.fixture
def mnist_dir():
  path = os.environ.get("ANOGAN_DATA_DIR", "")
  if not os.path.isfile(os.path.join(path, "mnist.npz")):
    pytest.skip("needs mnist.npz in $ANOGAN_DATA_DIR (CI sets it to ../shared/data)")
  return path


@pytest.fixture(scope="session")
def mnist_workdir(tmp_path_factory):
  """(config, workdir): seed 000's AnoGAN (the default Config) trained one epoch, one batch, on
  256 MNIST images of class 1. Shared by the session's tests, which read it and never change it
  (a test that changes a workdir copies it first, with shutil.copytree)."""
  path = os.environ.get("ANOGAN_DATA_DIR", "")
  if not os.path.isfile(os.path.join(path, "mnist.npz")):
    pytest.skip("needs mnist.npz in $ANOGAN_DATA_DIR (CI sets it to ../shared/data)")
  from anogan_tf import Config, train_lib
  config = Config(data_dir=path, normal_classes=(1,), epochs=1, train_examples=256)
  workdir = str(tmp_path_factory.mktemp("mnist_workdir") / "run")
  train_lib.train(config, workdir, progress=False)
  return config, workdir


@pytest.fixture(scope="session")
def family_runs(tmp_path_factory):
  """{family: (config, straight workdir, resumed workdir, straight history, resumed history)}: each
  family of the registry at test_families.run_config, on its blobs_data, trained 3 epochs in one
  go; the registry's first family also 1 epoch then resumed to 3, through lr_decay_epoch=2, so
  that both learning-rate phases run (the others' resumed workdir and history are None: every
  family's resume is compared bit for bit with an uninterrupted run in test_reliability.py, after
  a kill -9, in another process). Shared by test_families.py and test_precision.py (one xdist
  group: built once), which read the workdirs and never change them."""
  from test_families import FAMILIES, blobs_data, run_config

  from anogan_tf import train_lib
  root = tmp_path_factory.mktemp("families")
  out = {}
  for name in FAMILIES:
    config = run_config(name)
    straight, resumed, again = str(root / name / "straight"), None, None
    data = blobs_data(config)
    history = train_lib.train(config, straight, data=data, progress=False)
    if name == FAMILIES[0]:
      resumed = str(root / name / "resumed")
      train_lib.train(config.replace(epochs=1), resumed, data=data, progress=False)
      again = train_lib.train(config, resumed, data=data, progress=False)
    out[name] = (config, straight, resumed, history, again)
  return out


# make test runs each test file on one worker (pytest-xdist --dist loadfile), so that a module's
# fixtures are built once; the files of one SHARED_GROUPS group run on one worker together, so
# that the session fixture they share is built once (family_runs; mnist_workdir).
SHARED_GROUPS = {"test_families.py": "families", "test_precision.py": "families",
                 "test_cli.py": "mnist_workdir", "test_evaluate.py": "mnist_workdir"}
# The files (or groups) that take longest, longest first: handed out before all others, which
# follow in xdist's order (most tests first), so that no long file starts last on one worker
# while the other has nothing left to do.
LONGEST_FIRST = ("test_reliability.py", "families", "test_train.py", "test_distribute.py", "test_export.py",
                 "test_old_workdirs.py", "mnist_workdir", "test_compare.py", "test_warm_start.py", "test_folder_data.py",
                 "test_reproduce.py", "test_draem.py", "test_workdir_locks.py", "test_egbad.py",
                 "test_threshold.py", "test_gan_stability.py", "test_your_own_images.py", "test_clips.py")


class _LongestFirst(collections.OrderedDict):
  """xdist's queue of work units (scope -> tests): the first unit taken is the longest left."""

  def popitem(self, last=True):
    longest = [scope for scope in self if os.path.basename(scope) in LONGEST_FIRST]
    if last or not longest:
      return super().popitem(last)
    scope = min(longest, key=lambda scope: LONGEST_FIRST.index(os.path.basename(scope)))
    return scope, self.pop(scope)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  if config.getvalue("dist") != "loadfile":
    return None
  from xdist.scheduler import LoadFileScheduling

  class GroupedFiles(LoadFileScheduling):
    def __init__(self, config, log=None):
      super().__init__(config, log)
      self.workqueue = _LongestFirst()

    def _split_scope(self, nodeid):
      scope = super()._split_scope(nodeid)
      return SHARED_GROUPS.get(os.path.basename(scope), scope)
  return GroupedFiles(config, log)


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


def synthetic_examples(n, shape, seed=0):
  """Smooth structured examples in [-1, 1] of any example shape, the normals of the families'
  shared tests: images (h, w, c) are synthetic_images' blobs; series (T, features) slow sines,
  one random phase per series and a fixed offset per feature; clips (T, h, w, c) a blob moving at
  a constant speed from a random place."""
  shape = tuple(shape)
  rng = np.random.default_rng(seed)
  if len(shape) == 3:
    return synthetic_images(n, shape, seed)
  if len(shape) == 2:
    steps, features = shape
    t = np.arange(steps)[None, :, None] / steps
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    offset = np.arange(features)[None, None, :] * np.pi / 3
    return (0.5 * np.sin(2 * np.pi * 1.5 * t + phase + offset)).astype(np.float32)
  if len(shape) == 4:
    steps, h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w]
    start = rng.uniform(0.3, 0.7, (n, 1, 2)) * (h, w)
    velocity = rng.uniform(-0.5, 0.5, (n, 1, 2)) * (h, w) / max(steps, 1) / 2
    centres = start + np.arange(steps)[None, :, None] * velocity  # (n, T, 2)
    radius = max(h, w) / 6
    d = np.sqrt((yy[None, None] - centres[..., 0, None, None]) ** 2 + (xx[None, None] - centres[..., 1, None, None]) ** 2)
    clips = np.clip(1.5 - d / radius, 0, 1) * 2 - 1
    return np.repeat(clips[..., None], c, axis=-1).astype(np.float32)
  raise ValueError(f"no synthetic examples of shape {shape}")


def off_manifold_examples(normal, seed=0):
  """Examples clearly unlike `normal` (synthetic_examples), one per row of it, in [-1, 1]: the
  first half `normal` changed where its kind of example cannot change (images and clips inverted;
  series with a square pulse over a third of their steps), the rest uniform noise."""
  normal = np.asarray(normal)
  rng = np.random.default_rng(seed)
  half = len(normal) // 2
  changed = -normal[:half]
  if normal.ndim == 3:  # series (n, T, features): a square pulse where the sine was
    changed = normal[:half].copy()
    steps = normal.shape[1]
    start = rng.integers(0, steps - steps // 3 + 1, half)
    for row, first in enumerate(start):
      changed[row, first:first + steps // 3] = 0.95
  noise = rng.uniform(-1, 1, (len(normal) - half,) + normal.shape[1:])
  return np.concatenate([changed, noise]).astype(np.float32)


# Harness: one process runs a sequence of commands, each through its main(argv) as `python -m
# anogan_tf.<tool>` does (each call parses its own flags, so they share nothing but the process).
# For what needs a process of its own but not one per command: runs with --deterministic (a
# process-wide setting), and reruns after a kill -9. Cases: a JSON list of [tool, argv, hook]; a
# case's hook (or none) is its $ANOGAN_TEST_HOOK (anogan_tf/utils/faults.py), so a case may kill
# the process. The results ({"code", "stderr", "stdout"} per case) are rewritten after each case.
HARNESS = r"""
import contextlib, importlib, io, json, os, sys, traceback
cases_path, out_path = sys.argv[1:]
results = []
for tool, argv, hook in json.load(open(cases_path)):
  if hook:
    os.environ["ANOGAN_TEST_HOOK"] = hook
  else:
    os.environ.pop("ANOGAN_TEST_HOOK", None)
  module = importlib.import_module("anogan_tf." + tool)
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
  with open(out_path + ".tmp", "w") as f:
    json.dump(results, f)
  os.replace(out_path + ".tmp", out_path)
"""


class Harness:
  """HARNESS in a process of its own, started at once: `cases` is a list of (tool, argv) or (tool,
  argv, hook), tool as in `python -m anogan_tf.<tool>`; `results()` waits for the process and
  returns the results; `killed()` waits for a process whose last case's hook SIGKILLs it."""

  def __init__(self, folder, cases, cwd=ROOT, env=None, name="harness"):
    os.makedirs(folder, exist_ok=True)
    script, cases_path = os.path.join(folder, f"{name}.py"), os.path.join(folder, f"{name}_cases.json")
    self.out_path, self.log_path = os.path.join(folder, f"{name}_results.json"), os.path.join(folder, f"{name}.log")
    with open(script, "w") as f:
      f.write(HARNESS)
    self.cases = [(tool.removeprefix("anogan_tf."), list(argv), hook[0] if hook else None)
                  for tool, argv, *hook in cases]
    with open(cases_path, "w") as f:
      json.dump(self.cases, f)
    environment = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    environment.pop("ANOGAN_TEST_HOOK", None)
    with open(self.log_path, "w") as log:  # a file, not a pipe: nothing blocks on a full pipe
      self.proc = subprocess.Popen([sys.executable, script, cases_path, self.out_path], cwd=cwd, env=environment,
                                   stdout=log, stderr=subprocess.STDOUT)

  def _wait(self, timeout):
    try:
      self.proc.wait(timeout=timeout)
    finally:
      if self.proc.poll() is None:
        self.proc.kill()
        self.proc.wait()
    with open(self.log_path) as f:
      log = f.read()[-3000:]
    if not os.path.exists(self.out_path):
      return log, []
    with open(self.out_path) as f:
      return log, json.load(f)

  def results(self, timeout=600):
    log, results = self._wait(timeout)
    assert self.proc.returncode == 0, log
    return results

  def killed(self, timeout=600):
    """The results of every case but the last, which SIGKILLed the process (asserted)."""
    log, results = self._wait(timeout)
    assert self.proc.returncode == -signal.SIGKILL, (self.proc.returncode, log)
    assert len(results) == len(self.cases) - 1, log
    return results


def run_command(tool, *args, cwd=ROOT):
  """Runs `python -m anogan_tf.<tool> ...` in this process (its main(argv)): a CompletedProcess
  with its exit code and what it printed. For tests of what a command does; the process itself
  (exit codes seen by a shell, TensorFlow's own stderr, signals) is tested with real processes,
  once for each command."""
  import contextlib
  import importlib
  import io
  tool = tool if tool.startswith("anogan_tf.") else "anogan_tf." + tool
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


def run_cases(tool, cases, cwd=ROOT):
  """Each argv of `cases` through run_command, in this process: [{"code", "stderr", "stdout"}]."""
  results = []
  for argv in cases:
    done = run_command(tool, *argv, cwd=cwd)
    results.append({"code": done.returncode, "stderr": done.stderr, "stdout": done.stdout})
  return results
