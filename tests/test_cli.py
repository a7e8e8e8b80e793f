"""The command-line tools: bad settings are one `error:` line, evaluate and score take mapping
flags and refuse the ones the trained networks fix, presets work from any directory, and the
tools print no TensorFlow start-up noise and choose oneDNN's kernels, while a library import leaves
TensorFlow's logging and every environment variable alone.

Every `python -m anogan_tf.*` costs seconds of TensorFlow import, so the cases of what a command
does run through its main(argv) in the test process (conftest.run_cases), and the real processes,
for what the process itself shows (exit code, everything on its stderr), run concurrently.
"""

import importlib
import json
import os
import platform
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cases, synthetic_images

import anogan_tf
from anogan_tf import Config
from anogan_tf.cli.quiet import lines_to_show

NOISE = ("absl::InitializeLog", "cudart_stub", "port.cc", "oneDNN custom operations", "cpu_feature_guard",
         "cuInit", "remapper failed", "Traceback")


STARTED = []  # every process a test starts; the `processes` fixture ends those still running


@pytest.fixture(autouse=True)
def processes():
  yield STARTED
  while STARTED:
    proc = STARTED.pop()
    if proc.poll() is None:
      proc.kill()
      proc.communicate()


def _env(**extra):
  return {**os.environ, "PYTHONPATH": ROOT, **extra}


def _popen(args, cwd, env):
  proc = subprocess.Popen(args, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  STARTED.append(proc)
  return proc


def _start(*args, cwd, **env):
  return _popen([sys.executable, *args], cwd, _env(**env))


def _finish(proc, timeout=300):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def _one_error_line(stderr):
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert len(lines) == 1, stderr[-3000:]
  assert lines[0].startswith("error: "), lines
  return lines[0]


# --- bad settings: one line, exit 2, nothing written

BAD_FLAGS = {  # flag as given: the start of the error line
    "--d_dropout=1.5": "error: --d_dropout=1.5 is outside [0, 1); use a dropout rate",
    "--g_strides=2,0,1": "error: --g_strides=2,0,1 has an entry that is below 1; use strides of 1 or more",
    "--d_strides=0,2": "error: --d_strides=0,2 has an entry that is below 1; use strides of 1 or more",
    "--d_strides=-1,2": "error: --d_strides=-1,2 has an entry that is below 1",
    "--lr=0": "error: --lr=0.0 is not positive; use a positive learning rate",
    "--lr_after_decay=-1e-4": "error: --lr_after_decay=-0.0001 is not positive",
    "--g_steps=-1": "error: --g_steps=-1 is below 0",
    "--z_init_std=0": "error: --z_init_std=0.0 is not positive",
    "--map_lrs=0.1,0": "error: --map_lrs=0.1,0.0 has an entry that is not positive",
    "--bn_momentum=1": "error: --bn_momentum=1.0 is outside [0, 1)",
    "--adam_beta_2=1": "error: --adam_beta_2=1.0 is outside [0, 1)",
    "--adam_epsilon=0": "error: --adam_epsilon=0.0 is not positive",
    "--g_filters=16,0": "error: --g_filters=16,0 has an entry that is below 1",
    "--leaky_slope=-0.2": "error: --leaky_slope=-0.2 is outside [0, 1)",
    "--lr_decay_epoch=-5": "error: --lr_decay_epoch=-5 is below 0",
    "--feature_layer=logits": "error: unknown --feature_layer 'logits'; use one of conv1, act1, conv2, act2, flatten",
    "--flagfile=no/such.flags": "error: cannot read flagfile",
}


@pytest.mark.slow
def test_bad_settings_are_one_error_line_with_exit_code_2(tmp_path, mnist_dir):
  # Through train's main in this process. What a failing command's process shows (exit code 2
  # and nothing on stderr but the error line) is missing_workdir_evaluate's, below; train's own
  # `python -m` exits 2 in tests/test_workdir_locks.py (a second train on a new workdir).
  workdirs = {flag: str(tmp_path / f"w{i}") for i, flag in enumerate(BAD_FLAGS)}
  results = run_cases("train", [[f"--workdir={workdirs[flag]}", flag] for flag in BAD_FLAGS])
  assert len(results) == len(BAD_FLAGS)
  for (flag, start), result in zip(BAD_FLAGS.items(), results):
    assert result["code"] == 2, (flag, result)
    assert _one_error_line(result["stderr"]).startswith(start), (flag, result["stderr"])
    assert not os.path.exists(workdirs[flag]), flag


# --- evaluate and score on a trained workdir

@pytest.mark.slow
def test_evaluate_and_score_take_mapping_flags_and_refuse_the_trained_ones(tmp_path, mnist_workdir):
  # Seed 000's preset (one batch of one epoch): another preset's mapping can evaluate it.
  _, workdir = mnist_workdir
  before = sorted(os.listdir(workdir))
  quick = ["--test_examples=20", "--map_steps=2,2", "--map_batch_size=20"]
  paper = os.path.relpath(os.path.join(ROOT, "experiments", "paper.flags"), tmp_path)
  seed001 = os.path.join(ROOT, "experiments", "seed001.flags")
  evaluate_cases = [  # run from tmp_path: the presets' nested flagfiles must still resolve
      ([f"--workdir={workdir}", "--g_filters=8,4"],
       "error: --g_filters=8,4 does not match the workdir, trained with --g_filters=16,8; evaluate and score "
       "change only mapping settings, so drop --g_filters or train another workdir"),
      ([f"--workdir={workdir}", f"--flagfile={seed001}", "--normal_classes=1"],
       "error: --latent_dim=100 does not match the workdir, trained with --latent_dim=50"),
      ([f"--workdir={workdir}", f"--flagfile={paper}"],  # base.flags says --normal_classes=0
       "error: --normal_classes=0 does not match the workdir, trained with --normal_classes=1"),
      ([f"--workdir={workdir}", "--feature_layer=logits"], "error: unknown --feature_layer 'logits'"),
      # The reproduction driver's way: another preset's mapping on this GAN (--epochs=200 ignored).
      ([f"--workdir={workdir}", f"--flagfile={paper}", "--normal_classes=1", *quick,
        f"--eval_dir={tmp_path / 'eval_paper'}"], None),
      ([f"--workdir={workdir}", "--feature_layer=flatten", *quick, f"--eval_dir={tmp_path / 'eval_flatten'}"], None),
  ]
  images = tmp_path / "images.npy"
  np.save(images, synthetic_images(3))
  score_cases = [
      ([f"--workdir={workdir}", f"--input={images}", f"--output={tmp_path / 's1'}", "--latent_dim=20"],
       "error: --latent_dim=20 does not match the workdir, trained with --latent_dim=50"),
      ([f"--workdir={workdir}", f"--input={images}", f"--output={tmp_path / 's2'}", "--map_steps=2",
        "--map_lrs=0.1", "--feature_layer=conv2", "--epochs=7"], None),
  ]
  for tool, cases in (("evaluate", evaluate_cases), ("score", score_cases)):
    results = run_cases(tool, [argv for argv, _ in cases], cwd=tmp_path)
    assert len(results) == len(cases)
    for (argv, error), result in zip(cases, results):
      if error:
        assert result["code"] == 2, (argv, result)
        assert _one_error_line(result["stderr"]).startswith(error), (argv, result["stderr"])
      else:
        assert result["code"] == 0, (argv, result)
  assert sorted(os.listdir(workdir)) == before  # no eval/ from the refused runs
  with open(tmp_path / "eval_paper" / "metrics.json") as f:
    metrics = json.load(f)
  assert (metrics["lam"], metrics["map_reduction"], metrics["map_steps"]) == (0.1, "sum", [2, 2])
  assert (metrics["feature_layer"], metrics["test_examples"]) == ("act1", 20)
  with open(tmp_path / "eval_flatten" / "metrics.json") as f:
    assert json.load(f)["feature_layer"] == "flatten"
  assert len(open(tmp_path / "s2" / "scores.csv").read().splitlines()) == 4


# --- library manners: quiet commands, untouched library users

# Put beside a command as sitecustomize.py: writes the command's TF_ENABLE_ONEDNN_OPTS at exit.
REPORT_ONEDNN = """
import atexit, os
atexit.register(lambda: open(os.environ["ONEDNN_REPORT"], "w").write(os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")))
"""


@pytest.fixture(scope="module")
def missing_workdir_evaluate(tmp_path_factory):
  """A failing command as a user's shell runs it, started at once, one process for the tests
  below: `python -X importtime -m anogan_tf.evaluate` of a missing workdir, TF_ENABLE_ONEDNN_OPTS
  unset, with REPORT_ONEDNN as its sitecustomize.py. -X importtime writes a line per module to file
  descriptor 2 while TensorFlow loads: they must all come through, like any line that is not a
  known start-up notice. Calling it waits: (the missing workdir, exit code, stdout, stderr, the
  TF_ENABLE_ONEDNN_OPTS the command ran with)."""
  folder = tmp_path_factory.mktemp("missing_workdir_evaluate")
  (folder / "site").mkdir()
  (folder / "site" / "sitecustomize.py").write_text(REPORT_ONEDNN)
  report, missing = folder / "onednn.txt", folder / "missing"
  env = {k: v for k, v in _env().items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "anogan_tf.evaluate", f"--workdir={missing}"],
                          cwd=folder, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**env, "PYTHONPATH": f"{folder / 'site'}{os.pathsep}{ROOT}", "ONEDNN_REPORT": str(report)})
  done = []

  def result():
    if not done:
      code, out, err = _finish(proc)
      done.append((missing, code, out, err, report.read_text() if report.exists() else None))
    return done[0]
  yield result
  if proc.poll() is None:
    proc.kill()
    proc.communicate()


@pytest.mark.slow
def test_commands_print_their_own_output_only_and_errors_still_show(tmp_path, mnist_dir, missing_workdir_evaluate):
  preset = os.path.join(ROOT, "experiments", "mnist.flags")
  train = _start("-m", "anogan_tf.train", f"--flagfile={preset}", f"--workdir={tmp_path / 'w'}", "--epochs=1",
                 "--train_examples=64", "--normal_classes=1", cwd=tmp_path)
  code, out, err = _finish(train)
  assert code == 0, err[-3000:]
  assert out.startswith("trained 1 epochs: ")
  shown = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not line.startswith("train:")]
  assert shown == [], shown  # only the progress bar: no start-up notices, no remapper error
  with open(tmp_path / "w" / "flags.txt") as f:
    assert Config.from_flagfile_text(f.read()) == Config(normal_classes=(1,), epochs=1, train_examples=64)
  missing, code, out, err, _ = missing_workdir_evaluate()
  assert code == 2
  lines = err.splitlines()
  assert sum(line.startswith("import time:") for line in lines) > 500
  assert any(re.match(r"import time: .*\|\s+tensorflow$", line) for line in lines)
  assert [line for line in lines if not line.startswith("import time:")] == [
      f"error: {missing} holds no flags.txt: not a trained workdir; train first with "
      f"python -m anogan_tf.train --workdir={missing}"]


def test_the_noise_filter_drops_known_notices_only():
  lines = [
      b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
      b"I0000 00:00:1795732190.895211    4178 port.cc:153] oneDNN custom operations are on. You may see "
      b"slightly different numerical results due to floating-point round-off errors.\n",
      b"I0000 00:00:1795732190.895495    4178 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
      b"GPU will not be used.\n",
      b"I0000 00:00:1795732190.940749    4178 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to "
      b"use available CPU instructions in performance-critical operations.\n",
      b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
      b"appropriate compiler flags.\n",
      b"E0000 00:00:1795732344.037860    4800 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
      b"Failed call to cuInit: UNKNOWN ERROR (303)\n",
      b"E0000 00:00:1795732778.103335    6278 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: "
      b"Mutation::Apply error: fanout 'while/body/_1/gradient_tape/while/discriminator_7/act2_1/LeakyRelu/"
      b"LeakyReluGrad' exist for missing node 'while/body/_1/while/discriminator_7/conv2_1/BiasAdd'.\n",
  ]
  real = [
      b"E0000 00:00:1795732778.103335    6278 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: "
      b"something else\n",
      b"E0000 00:00:1795732344.037860    4800 some_kernel.cc:52] OOM when allocating tensor\n",
      b"W0000 00:00:1795732344.037860    4800 port.cc:153] a warning from port.cc\n",
      b"F0000 00:00:1795732344.037860    4800 check.cc:1] Check failed: x\n",
      b"a line of Python\n",
  ]
  assert list(lines_to_show(lines + real)) == real
  # cuInit's failure is noise only after the no-driver notice: on a GPU machine it is a real error.
  assert list(lines_to_show(lines[5:6])) == lines[5:6]


# Imports anogan_tf in a fresh interpreter after what it imports itself (TensorFlow and Keras set
# variables of their own): prints which environment variables the package's import changed.
IMPORT_CHANGES = """
import json, os
import keras, tensorflow
before = dict(os.environ)
import anogan_tf
print(json.dumps({k: [before.get(k), os.environ.get(k)] for k in set(before) | set(os.environ)
                  if before.get(k) != os.environ.get(k)}))
"""


@pytest.mark.slow
def test_importing_the_library_changes_no_environment_variable_and_the_commands_choose_onednn(
    tmp_path, missing_workdir_evaluate):
  env = {k: v for k, v in _env().items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  library = _popen([sys.executable, "-c", IMPORT_CHANGES], tmp_path, env)
  code, out, err = _finish(library)
  assert code == 0, err[-3000:]
  assert json.loads(out) == {}  # TF_ENABLE_ONEDNN_OPTS included: the host program's numerics are its own
  _, code, _, err, onednn = missing_workdir_evaluate()  # a command, TF_ENABLE_ONEDNN_OPTS unset as here
  assert code == 2
  assert _one_error_line("\n".join(line for line in err.splitlines() if not line.startswith("import time:")))
  x86 = platform.machine().lower() in ("x86_64", "amd64")
  assert onednn == ("1" if x86 else "unset")  # python -m anogan_tf.*: oneDNN's kernels on x86-64


def test_importing_the_library_leaves_tensorflow_logging_alone(monkeypatch):
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  stderr = sys.stderr
  importlib.reload(anogan_tf)  # runs the package's import-time code again, as a user's program would
  assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
  assert sys.stderr is stderr
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
  importlib.reload(anogan_tf)
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
