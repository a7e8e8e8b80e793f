"""Workdir locks against real concurrent processes (issue "Hardening", item 4).

- Two `train`s on the same NEW workdir: the workdir is locked before anything in it is checked,
  cleaned or written, so the second one fails at once with a one-line error instead of deleting
  the first one's in-flight temporaries (or, with --overwrite, its checkpoints).
- `train --overwrite` deletes eval/ and the eval_*/ folders of `evaluate --eval_dir`, so it takes
  evaluate's lock on each first: while an evaluate runs, it fails and deletes nothing.

A process is held at a precise point either by the test-only hook of anogan_tf/faults.py (pause:
touch a marker, sleep until SIGKILLed) or, where it must go on afterwards, by a gate: a wrapper
that runs `python -m anogan_tf.train` with its data loading held until the test creates a file.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, run_command, synthetic_images

from anogan_tf import AnoganError, Config, train_lib
from anogan_tf.engine import history as history_lib
from anogan_tf.engine import workdir as workdir_lib

SMALL = ["--normal_classes=1", "--g_dense_channels=8", "--g_filters=4,4", "--d_filters=4,8", "--batch_size=32",
         "--latent_dim=8", "--map_steps=2,2", "--map_batch_size=64", "--test_examples=20", "--epochs=1"]
SMALL_CONFIG = dict(normal_classes=(1,), g_dense_channels=8, g_filters=(4, 4), d_filters=(4, 8), batch_size=32,
                    latent_dim=8, map_steps=(2, 2), map_batch_size=64, test_examples=20, epochs=1)

# Runs the train command line with load_one_class held until the file argv[1] exists; touches
# argv[2] when it gets there. Data loading comes after the workdir's lock and before anything
# is written, so the process sits exactly where a slow data source would hold it.
GATED_TRAIN = r'''
import os, runpy, sys, time
gate, arrived = sys.argv[1:3]
from anogan_tf import train_lib
load = train_lib.load_one_class
def held(config, *args, **kwargs):
  open(arrived, "w").close()
  while not os.path.exists(gate):
    time.sleep(0.05)
  return load(config, *args, **kwargs)
train_lib.load_one_class = held
sys.argv = ["anogan_tf.train"] + sys.argv[3:]
runpy.run_module("anogan_tf.train", run_name="__main__", alter_sys=True)
'''


def _env(hook=None, marker=None):
  env = {**os.environ, "PYTHONPATH": ROOT}
  env.pop("ANOGAN_TEST_HOOK", None)
  if hook:
    env["ANOGAN_TEST_HOOK"] = hook
    env["ANOGAN_TEST_HOOK_MARKER"] = str(marker)
  return env


def _popen(argv, hook=None, marker=None):
  return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env(hook, marker), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc, timeout=300):
  out, err = proc.communicate(timeout=timeout)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _wait_for(path, proc, timeout=240):
  """Waits until `proc` creates `path`; returns False if it ended first."""
  deadline = time.monotonic() + timeout
  while not os.path.exists(path):
    if proc.poll() is not None:
      return False
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail(f"{proc.args} never reached its pause point")
    time.sleep(0.1)
  return True


def _kill9(proc):
  os.kill(proc.pid, signal.SIGKILL)
  proc.communicate()


def _error_line(stderr):
  assert "Traceback" not in stderr, stderr
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert lines and lines[-1].startswith("error: ") and sum(l.startswith("error: ") for l in lines) == 1, stderr
  return lines[-1]


def _snapshot(root):
  out = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs:
      out[os.path.relpath(os.path.join(folder, name), root) + "/"] = "dir"
    for name in files:
      with open(os.path.join(folder, name), "rb") as f:
        out[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _data_dir(folder, n_train=96, n_test=40):
  os.makedirs(folder, exist_ok=True)
  pixels = lambda n, seed: np.round((synthetic_images(n, seed=seed)[..., 0] + 1) * 127.5).astype(np.uint8)
  np.savez(os.path.join(folder, "mnist.npz"), x_train=pixels(n_train, 0), y_train=np.arange(n_train) % 2,
           x_test=pixels(n_test, 1), y_test=np.arange(n_test) % 2)
  return str(folder)


@pytest.mark.slow
def test_second_train_on_a_new_workdir_fails_and_leaves_the_first_alone(tmp_path):
  data = _data_dir(tmp_path / "data")
  w = str(tmp_path / "new" / "run")  # neither the workdir nor its parent exist yet
  argv = [f"--workdir={w}", f"--data_dir={data}", *SMALL]
  gate, arrived, marker = tmp_path / "gate", tmp_path / "arrived", tmp_path / "paused"
  first = _popen(["-c", GATED_TRAIN, str(gate), str(arrived), *argv])
  assert _wait_for(arrived, first), _finish(first).stderr  # the first train is loading its data
  second = _popen(["-m", "anogan_tf.train", *argv], hook="epoch@0=pause", marker=marker)
  if _wait_for(marker, second):
    # The second train got the workdir and is training (the bug): give it temporaries in flight,
    # as it has while it writes history.csv or a checkpoint, then let the first one go on.
    in_flight = [os.path.join(w, f".history.tmp{second.pid}.csv"), os.path.join(w, "checkpoints", "ckpt-1_temp")]
    open(in_flight[0], "w").close()
    os.makedirs(in_flight[1])
    gate.touch()
    done = _finish(first)
    lost = [p for p in in_flight if not os.path.exists(p)]
    _kill9(second)
    pytest.fail(f"a second train ran on the new workdir {w} while the first was starting; the first one then "
                f"deleted its in-flight {lost} and ended with {done.returncode}: {done.stderr[-300:]}")
  result = _finish(second)
  assert result.returncode == 2, result.stderr
  assert f"another train is running on {w}" in _error_line(result.stderr)
  gate.touch()
  result = _finish(first)
  assert result.returncode == 0, result.stderr
  assert history_lib.read_history(os.path.join(w, "history.csv"))[-1]["epoch"] == 0
  assert os.path.exists(os.path.join(w, "generator.keras"))


@pytest.mark.slow
def test_overwrite_takes_evaluates_lock_on_eval_folders(tmp_path):
  data = _data_dir(tmp_path / "data")
  w = str(tmp_path / "run")
  config = Config(data_dir=data, **SMALL_CONFIG)
  train_lib.train(config, w, progress=False)
  os.makedirs(os.path.join(w, "eval"))  # what an earlier evaluate left (only its name matters here)
  open(os.path.join(w, "eval", "metrics.json"), "w").write("{}\n")
  marker = tmp_path / "paused"
  # An evaluate with other mapping settings into eval_paper/ (as experiments/reproduce.py does),
  # held while mapping: `train --overwrite` must wait for it, not delete the folder under it.
  evaluating = _popen(["-m", "anogan_tf.evaluate", f"--workdir={w}", f"--eval_dir={w}/eval_paper", "--lam=0.1"],
                      hook="map=pause", marker=marker)
  try:
    assert _wait_for(marker, evaluating), _finish(evaluating).stderr
    before = _snapshot(w)  # the train command, run by this process: a second process beside the evaluate
    result = run_command("train", f"--workdir={w}", "--overwrite", f"--data_dir={data}", *SMALL)
    assert result.returncode == 2, f"train --overwrite ran during an evaluate: {result.stderr[-500:]}"
    line = _error_line(result.stderr)
    assert f"an evaluate is running on {w}" in line and "eval_paper" in line, line
    assert _snapshot(w) == before
  finally:
    _kill9(evaluating)

  # The same for eval/ (here the test process holds evaluate's lock).
  before = _snapshot(w)
  with workdir_lib.lock_eval(w):
    with pytest.raises(AnoganError, match=f"an evaluate is running on {w} .*eval"):
      train_lib.train(config, w, overwrite=True, progress=False)
  assert _snapshot(w) == before
  # With no evaluate running, --overwrite clears every evaluation folder.
  train_lib.train(config, w, overwrite=True, progress=False)
  assert not [n for n in os.listdir(w) if n == "eval" or n.startswith("eval_")]


def test_failing_run_on_a_new_workdir_leaves_nothing_behind(tmp_path):
  # The workdir is created to be locked before anything is checked: a run that then fails removes
  # the (still empty) folders it created, so bad input leaves no trace.
  data = _data_dir(tmp_path / "data")
  w = str(tmp_path / "a" / "b" / "run")
  with pytest.raises(AnoganError, match="no training images of class 7"):
    train_lib.train(Config(data_dir=data, **{**SMALL_CONFIG, "normal_classes": (7,)}), w, progress=False)
  assert not os.path.exists(tmp_path / "a")
  # A folder that existed (even empty) is left as it was.
  os.makedirs(w)
  with pytest.raises(AnoganError, match="no training images of class 7"):
    train_lib.train(Config(data_dir=data, **{**SMALL_CONFIG, "normal_classes": (7,)}), w, progress=False)
  assert os.listdir(w) == []
