"""experiments/compare.py (`make compare`) end to end on tiny settings: every method of the family
scored on one class, the AnoGAN methods on one shared GAN (its warm starts and best.flags on one
encoder), the other families each on their own, speeds measured in one process, one table; progress
shown as the commands show it; its __main__ quiets TensorFlow before it loads."""

import json
import os
import platform
import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "experiments"))

import compare  # noqa: E402

TINY = ("--epochs=1 --train_examples=64 --test_examples=64 --batch_size=32 --latent_dim=8 --g_dense_channels=8"
        " --g_filters=8,4 --d_filters=4,8 --e_filters=4,8")


# Put beside `python experiments/compare.py` as sitecustomize.py: at exit, what its __main__ set and
# whether TensorFlow was loaded.
REPORT = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["DRIVER_REPORT"], "w").write(json.dumps(dict(
    onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS"), log_level=os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
    tensorflow="tensorflow" in sys.modules))))
"""


@pytest.mark.slow
def test_compare_runs_as_a_command_before_tensorflow_loads(tmp_path):
  """`python experiments/compare.py`'s __main__ first does what the commands do before TensorFlow
  loads (reproduce.as_a_command: oneDNN's kernels on x86-64, TensorFlow's start-up notices quieted),
  before it reads its flags, and its import loads no TensorFlow: --help shows it without a run.
  That as_a_command hides the notices of a driver's process: tests/test_reproduce.py's first run."""
  (tmp_path / "site").mkdir()
  (tmp_path / "site" / "sitecustomize.py").write_text(REPORT)
  env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
  done = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "compare.py"), "--help"], cwd=tmp_path,
                        env={**env, "PYTHONPATH": str(tmp_path / "site"), "DRIVER_REPORT": str(tmp_path / "report")},
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and "--speed_images" in done.stdout, done.stderr[-3000:]
  x86 = platform.machine().lower() in ("x86_64", "amd64")
  assert json.loads((tmp_path / "report").read_text()) == dict(onednn="1" if x86 else None, log_level="2",
                                                                tensorflow=False)


@pytest.mark.slow
def test_compare_scores_every_method_sharing_the_anogan_gan(tmp_path, mnist_dir, capsys, monkeypatch):
  # compare.py's main in this process, and each command the driver starts through its main(argv)
  # here too instead of a `python -m` of its own: what is tested here is the driver's bookkeeping;
  # tests/test_reproduce.py runs the commands as processes (run_logged), the test above compare.py's
  # __main__.
  from in_process import run_logged
  monkeypatch.setattr(compare.reproduce, "run_logged", run_logged)
  monkeypatch.setattr(compare.reproduce, "RUNS", dict(compare.reproduce.RUNS))  # main sets the encoder's epochs
  monkeypatch.chdir(ROOT)  # reproduce's main moves there; back afterwards
  capsys.readouterr()
  assert compare.main(["--dataset=mnist", "--classes=0", "--seeds=0", f"--runs_dir={tmp_path / 'runs'}",
                       f"--results_dir={tmp_path / 'results'}", f"--extra={TINY}", "--encoder_epochs=1",
                       "--speed_images=64", "--speed_rounds=1"]) == 0
  _, err = capsys.readouterr()
  err = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
  assert err[0] == "run 1 of 1: mnist class 0 seed 0, presets " + ", ".join(
      compare.SAME_AS_PRESET.get(m, m) for m in compare.METHODS), err[0]
  assert sum(line.startswith("run 1 of 1: mnist class 0 seed 0 done in ") for line in err) == 1
  for bar in ("train", "encoder", "score", "speed"):  # each training's epochs, each scoring, the speed runs
    assert any(line.startswith(f"{bar}: 100%|") for line in err), bar
  summary = json.loads((tmp_path / "results" / "compare_mnist.json").read_text())
  assert list(summary) == list(compare.METHODS)  # DESIGN.md section 4: method name -> its entry
  for method, m in summary.items():
    assert 0 <= m["per_class_auroc"]["0"] <= 1 and m["images_per_second"] > 0 and m["n_runs"] == 1, method
    assert 0 <= m["mean_auroc"] <= 1 and m["test_images"] == [64] and m["seeds"] == [0], method

  # One GAN for anogan, its warm starts and best (trained once, its encoder once); one each for the others.
  gans = sorted(os.listdir(tmp_path / "runs" / "mnist"))
  assert len(gans) == 4, gans
  shared = [g for g in gans if os.path.isdir(tmp_path / "runs" / "mnist" / g / "class0_seed0" / "eval_best")]
  assert len(shared) == 1
  workdir = tmp_path / "runs" / "mnist" / shared[0] / "class0_seed0"
  log = (workdir / "reproduce.log").read_text()
  assert log.count("anogan_tf.train") == 1 and log.count("anogan_tf.evaluate") == 6
  assert sorted(p for p in os.listdir(workdir) if p.startswith("eval_")) == sorted(
      f"eval_{compare.SAME_AS_PRESET.get(m, m)}" for m in compare.ENCODER_METHODS + ("anogan",))
  # Warm starts and best count their encoder's training; anogan only the GAN's.
  methods = summary
  assert methods["anogan_best"]["mean_train_seconds"] > methods["anogan"]["mean_train_seconds"]
  assert methods["anogan_warm_0"]["mean_train_seconds"] == methods["anogan_best"]["mean_train_seconds"]
  assert "--dataset=mnist" in methods["anogan"]["command"] and methods["anogan"]["speed_commit"]  # exact command
  table = (tmp_path / "results" / "compare_mnist.md").read_text()
  assert all(f"| {m} |" in table for m in compare.METHODS)


def test_train_times_median_and_encoder():
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import compare
  records = [{"train_seconds": t, "encoder_seconds": 10.0} for t in (400.0, 420.0, 2100.0)]  # one run paused
  assert compare.train_times("anogan", records) == {"mean_train_seconds": 2920.0 / 3, "median_train_seconds": 420.0}
  assert compare.train_times("anogan_warm_0", records)["median_train_seconds"] == 430.0  # GAN + its encoder


def test_method_records_only_the_requested_classes_and_seeds(tmp_path):
  """anogan's records are seed000's, which hold seeds the compare run did not ask for."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import compare
  for c, seed in ((0, 0), (0, 1), (1, 0), (2, 0)):
    path = tmp_path / "runs" / "mnist_seed000" / f"class{c}_seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"class": c, "seed": seed}))
  got = compare.method_records(str(tmp_path), "mnist", "anogan", [0, 1], [0])
  assert sorted((r["class"], r["seed"]) for r in got) == [(0, 0), (1, 0)]
