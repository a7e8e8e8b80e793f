"""Reliability (issue 4): kill -9 loses nothing, bad input is a clean one-line error that leaves
the workdir alone, NaN stops training, a collapse is reported, --deterministic repeats exactly,
two evaluates cannot interleave. For every model family: the full versions for anogan (kills
during an epoch, between two exports, while evaluate maps and while it writes), and for each other
registered family a kill -9 at the subtlest point (a checkpoint written, not committed) and the
bad-input cases that go through the family's own files (checkpoint, <network>.keras, scorer). --deterministic: every killed and rerun
workdir equals an uninterrupted run, trained in another process, bit for bit.

Kills land deterministically through the test-only hook in anogan_tf/faults.py: the process
either SIGKILLs itself at a named point or pauses there until the test SIGKILLs it.
Every `python -m anogan_tf.*` costs ~5 s of TensorFlow import, so bad-input cases run through
each command's main(argv) in the test process (what `python -m` runs), and one case per command
also as a real process, concurrently; the other families' kills and reruns share one chain of
processes (conftest.Harness), each rerunning one family, making the next one's uninterrupted
reference run and starting its train, which it kills; anogan's reference run shares the process
of one of its reruns, and so does the chain's last rerun.
"""

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import ROOT, Harness, run_cases, synthetic_images

from anogan_tf import AnoganError, Config, evaluate_lib, models, train_lib
from anogan_tf.config import RESUMABLE_FIELDS
from anogan_tf.data import OneClassData, load_one_class
from anogan_tf.engine import checkpoints
from anogan_tf.engine import history as history_lib
from anogan_tf.engine import workdir as workdir_lib

# Small networks on a slice of MNIST: every train/evaluate process takes a few seconds.
TINY = ["--normal_classes=1", "--train_examples=256", "--test_examples=40", "--g_dense_channels=8",
        "--g_filters=4,4", "--d_filters=4,8", "--batch_size=64", "--latent_dim=8", "--map_steps=5,5",
        "--map_batch_size=64", "--seed=1", "--deterministic", "--epochs=4"]
TINY_CONFIG = dict(g_dense_channels=8, g_filters=(4, 4), d_filters=(4, 8), batch_size=64, latent_dim=8,
                   map_steps=(2, 2), map_batch_size=64)
# A family of series trains on a UCR dataset of ../shared/data/ucr instead (tiny LSTMs).
SERIES_TINY = ["--dataset=ucr", "--ucr_name=GunPoint", "--normal_classes=1", "--train_examples=256",
               "--test_examples=40", "--lstm_units=8", "--latent_dim=8", "--batch_size=8", "--map_batch_size=64",
               "--seed=1", "--deterministic", "--epochs=4"]
# A family of clips trains on Moving MNIST clips instead: 4 frames of 32 x 32, tiny ConvLSTMs.
CLIPS_TINY = ["--dataset=moving_mnist", "--normal_classes=0,1,2,3,4,5,6,7", "--image_size=32", "--clip_length=4",
              "--clip_window=3", "--e_filters=4,8", "--e_strides=4,2", "--convlstm_filters=4,4,4",
              "--train_examples=256", "--test_examples=40", "--batch_size=32", "--map_batch_size=64", "--seed=1",
              "--deterministic", "--epochs=4"]
FAMILIES = models.names()
OTHER_FAMILIES = [name for name in FAMILIES if name != "anogan"]  # anogan has the full versions
# The bad-input battery damages MNIST .npz files and pictures: the image families'.
OTHER_IMAGE_FAMILIES = [name for name in OTHER_FAMILIES if models.examples(models.family(name)) == "images"]


def tiny_flags(family):
  """TINY for `family` (its encoder as small as D, DRAEM's U-Nets as narrow; a GAN's D other than
  anogan's with DiffAugment and spectral norms); SERIES_TINY for a family of series, CLIPS_TINY for
  one of clips."""
  if models.examples(models.family(family)) == "clips":
    return CLIPS_TINY + [f"--model={family}"]
  if models.examples(models.family(family)) == "series":
    return SERIES_TINY + [f"--model={family}", f"--data_dir={os.path.join(os.environ.get('ANOGAN_DATA_DIR', ''), 'ucr')}"]
  flags = TINY if family == "anogan" else TINY + [f"--model={family}", "--e_filters=4,8", "--draem_width=4"]
  if models.trains_a_gan_discriminator(models.family(family)) and family != "anogan":
    # D trained as for photographs: the kill also tests that DiffAugment's generator and the spectral
    # norms' vectors resume (anogan's: test_gan_stability.py)
    flags = flags + ["--diffaugment=color,translation,cutout", "--d_spectral_norm"]
  return flags


# --- helpers

def _env(hook=None, marker=None):
  env = {**os.environ, "PYTHONPATH": ROOT}
  env.pop("ANOGAN_TEST_HOOK", None)
  if hook:
    env["ANOGAN_TEST_HOOK"] = hook
  if marker:
    env["ANOGAN_TEST_HOOK_MARKER"] = str(marker)
  return env


def start(*args, hook=None, marker=None):
  return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=_env(hook, marker), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc, timeout=300):
  out, err = proc.communicate(timeout=timeout)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(*args, hook=None):
  return finish(start(*args, hook=hook))


def pause_then_kill9(proc, marker, while_paused=None, timeout=240):
  """Waits until `proc` pauses at its hook, calls `while_paused()`, then SIGKILLs it."""
  deadline = time.monotonic() + timeout
  while not os.path.exists(marker):
    if proc.poll() is not None:
      pytest.fail(f"process ended ({proc.returncode}) before its pause point:\n{proc.communicate()[1]}")
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail("process never reached its pause point")
    time.sleep(0.1)
  try:
    if while_paused:
      while_paused()
  finally:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
  assert proc.returncode == -signal.SIGKILL
  os.remove(marker)


def history(workdir):
  with open(os.path.join(workdir, "history.csv")) as f:
    return list(csv.DictReader(f))


def epochs(workdir):
  return [int(row["epoch"]) for row in history(workdir)]


def latest(workdir):
  path = checkpoints.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  return path and os.path.basename(path)


def snapshot(root):
  """{relative path: sha256 or 'dir'} for everything under root; None if root does not exist."""
  if not os.path.lexists(root):
    return None
  if os.path.isfile(root):
    return {".": hashlib.sha256(open(root, "rb").read()).hexdigest()}
  out = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs:
      out[os.path.relpath(os.path.join(folder, name), root) + "/"] = "dir"
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def error_line(stderr):
  """The single `error: ...` line, checked to be the last line and to come without a traceback."""
  assert "Traceback" not in stderr, stderr
  lines = [line for line in stderr.splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith("error: ")]
  assert len(errors) == 1, stderr
  assert lines[-1] == errors[0], stderr
  return errors[0]


# --- 1. kill -9 at every stage; rerunning the same command resumes and completes

def clean_cases(family, workdir):
  """An uninterrupted TINY run of `family` into `workdir` (train, then evaluate) as conftest.Harness
  cases: run in a process that does nothing else to that workdir (--deterministic is process-wide,
  so every run of these tests that is compared runs in a process of its own), beside the kills
  and reruns of another workdir, so that they start no process of their own.

  Every kill test compares its killed and rerun workdir (trained in other processes) with such a
  run bit for bit: that is also the test that two --deterministic runs of the same command give
  the same history, scores and weights."""
  return [("train", [f"--workdir={workdir}", *tiny_flags(family)]), ("evaluate", [f"--workdir={workdir}"])]


def checked_clean_run(family, workdir, results):
  """`workdir`, checked to be a complete run of `family` (clean_cases; `results` their two results)."""
  failures = [r["stderr"][-3000:] for r in results if r["code"] != 0]
  assert len(results) == 2 and not failures, failures
  assert len(history(workdir)) == 4
  assert len(open(os.path.join(workdir, "eval", "scores.csv")).read().splitlines()) == 41
  assert json.load(open(os.path.join(workdir, "eval", "metrics.json")))["model"] == family
  flags_txt = open(os.path.join(workdir, "flags.txt")).read()
  assert "--deterministic=true" in flags_txt and "--train_examples=256" in flags_txt
  assert f"--model={family}" in flags_txt.splitlines()
  return workdir


def weights_of(workdir):
  """{network: its exported weights} of the workdir's family."""
  import keras
  config = Config.from_flagfile_text(open(os.path.join(workdir, "flags.txt")).read())
  return {name: [w.numpy() for w in keras.models.load_model(os.path.join(workdir, f"{name}.keras")).weights]
          for name in models.family(config.model).NETWORKS}


def assert_same_evaluation(w, reference):
  """The same eval/ files, bit for bit, but TensorBoard's events (stamped by the time) and metrics.json's
  timings and workdir."""
  untimed = lambda workdir: {k: v for k, v in json.loads(open(os.path.join(workdir, "eval", "metrics.json")).read()
                                                         .replace(workdir, "<workdir>")).items()
                             if k not in ("seconds", "images_per_second")}
  assert untimed(w) == untimed(reference)
  files = [{path: digest for path, digest in snapshot(os.path.join(workdir, "eval")).items()
            if not path.startswith("tensorboard/")} for workdir in (w, reference)]
  assert sorted(files[0]) == sorted(files[1])
  different = [path for path in files[1] if path != "metrics.json" and files[0][path] != files[1][path]]
  assert not different, different


def assert_same_run(w, reference, evaluated=True):
  """The same history (but seconds), scores.csv and AUROC (if `evaluated`) and exported weights, bit for bit."""
  drop_seconds = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
  assert drop_seconds(history(w)) == drop_seconds(history(reference))
  if evaluated:
    assert open(os.path.join(w, "eval", "scores.csv")).read() == open(os.path.join(reference, "eval", "scores.csv")).read()
    metrics = [json.load(open(os.path.join(workdir, "eval", "metrics.json"))) for workdir in (w, reference)]
    assert metrics[0]["auroc"] == metrics[1]["auroc"]
  mine, theirs = weights_of(w), weights_of(reference)
  assert list(mine) == list(theirs)
  for name in mine:
    assert len(mine[name]) == len(theirs[name]) > 0
    for a, b in zip(mine[name], theirs[name]):
      np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.slow
def test_kill9_anywhere_then_rerun_resumes_completes_and_matches_an_uninterrupted_run(tmp_path, mnist_dir,
                                                                                      family_chain):
  w, clean = str(tmp_path / "w"), str(tmp_path / "clean")
  train = ("anogan_tf.train", f"--workdir={w}", *TINY)
  evaluate = ("anogan_tf.evaluate", [f"--workdir={w}"])
  marker = tmp_path / "paused"

  def train_meanwhile():  # a second train (here in-process) on the same workdir is refused at once
    config = Config.from_flagfile_text(open(os.path.join(w, "flags.txt")).read()).replace(deterministic=False)
    with pytest.raises(AnoganError, match=f"another train is running on {w}; wait for it to finish"):
      train_lib.train(config, w, progress=False)

  # During epoch 2 (trained, nothing of it written yet), SIGKILLed from outside.
  pause_then_kill9(start(*train, hook="epoch@1=pause", marker=marker), marker, while_paused=train_meanwhile)
  assert epochs(w) == [0] and latest(w) == "ckpt-1"
  assert not os.path.exists(os.path.join(w, "generator.keras"))

  # (Killed with checkpoint 3's files written but not committed: every other family, family_kills.)
  # Killed between exporting generator.keras and discriminator.keras.
  result = run(*train, hook="export=kill")
  assert result.returncode == -signal.SIGKILL, result.stderr
  assert epochs(w) == [0, 1, 2, 3] and latest(w) == "ckpt-4"
  assert not os.path.exists(os.path.join(w, "discriminator.keras"))

  # The same command again: nothing left to train, the models are exported. Then, in the same
  # process (conftest.Harness: the commands' main), an evaluation killed after writing scores.csv,
  # before the figures and metrics.json (written last): eval/ reads as incomplete. That process
  # first makes the uninterrupted run that all of this is compared with (clean_cases), and before
  # that the rerun family_chain left pending (another family's, compared in its own test).
  hosted = take_pending(family_chain)
  evaluate_killed = Harness(str(tmp_path), hosted + clean_cases("anogan", clean) + [
      (train[0], train[1:]), (*evaluate, "eval_write=kill")], name="rerun")
  try:
    *clean_results, result = evaluate_killed.killed()[len(hosted):]
  finally:
    record_pending(family_chain, hosted, evaluate_killed)
  checked_clean_run("anogan", clean, clean_results)
  assert result["code"] == 0, result["stderr"]
  assert epochs(w) == [0, 1, 2, 3]
  assert sorted(os.listdir(os.path.join(w, "checkpoints"))) == [
      "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index", "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
  assert sorted(os.listdir(os.path.join(w, "samples"))) == [f"epoch_{e:04d}.png" for e in range(1, 5)]
  for name in ("flags.txt", "generator.keras", "discriminator.keras", "loss.png"):
    assert os.path.getsize(os.path.join(w, name)) > 0, name
  assert not [n for n in os.listdir(w) if n.startswith(".")]  # no temporary left behind

  assert os.path.exists(os.path.join(w, "eval", "scores.csv"))
  assert not os.path.exists(os.path.join(w, "eval", "metrics.json"))
  # The same command again completes it. Then, in the same process, an evaluation killed while
  # mapping (paused there): the complete eval/ stays as it was. While it is paused, the complete
  # eval/ is read (its files but the timed ones are the uninterrupted run's, so the paused
  # evaluate changed none of them before mapping) and a second evaluate on the workdir is refused.
  before = {}

  def evaluate_meanwhile():
    with open(evaluations.out_path) as f:
      completed = json.load(f)
    assert len(completed) == 1 and completed[0]["code"] == 0, completed
    for name in evaluate_lib.EVAL_FILES:
      assert os.path.getsize(os.path.join(w, "eval", name)) > 0, name
    assert not [n for n in os.listdir(os.path.join(w, "eval")) if n.startswith(".")]
    with open(os.path.join(w, "eval", "metrics.json")) as f:
      metrics = json.load(f)
    assert metrics["n_normal"] + metrics["n_anomalous"] == 40
    assert_same_evaluation(w, clean)
    before.update(snapshot(os.path.join(w, "eval")))
    config = Config.from_flagfile_text(open(os.path.join(w, "flags.txt")).read()).replace(deterministic=False)
    with pytest.raises(AnoganError, match=f"another evaluate is running on {w}; wait for it to finish"):
      evaluate_lib.evaluate(config, w, progress=False)

  evaluations = Harness(str(tmp_path), [evaluate, (*evaluate, "map=pause")], env={"ANOGAN_TEST_HOOK_MARKER": str(marker)},
                        name="evaluations")
  pause_then_kill9(evaluations.proc, marker, while_paused=evaluate_meanwhile)
  assert before and snapshot(os.path.join(w, "eval")) == before

  # Killed four times (two trains, two evaluates), yet the same numbers as a run never
  # interrupted (--deterministic).
  assert_same_run(w, clean)


# The other families' runs also hold a tenth of the normal training images out: training ends by
# scoring them with the family's scorer into threshold.json, which then shows that the scorer gives
# the same scores in the process of the rerun as in the one of the uninterrupted run. At most 128
# training examples (half the anogan runs': still two batches an epoch of images, four of clips;
# GunPoint has fewer series anyway): six families train three times each.
CHAIN_FLAGS = ["--val_fraction=0.1", "--train_examples=128"]


def assert_same_files(w, reference):
  """Every file of the two workdirs, bit for bit, but what differs between any two runs: history.csv's
  seconds (assert_same_run compares the rest), TensorBoard's event files (named and stamped by the
  time), the .keras archives (stamped by the time: assert_same_run compares their weights) and the
  checkpoints' contents (their names and state file are compared). So threshold.json, flags.txt,
  the samples and the loss plot are the same, and a rerun leaves nothing else behind."""
  ignored = lambda path: (path.startswith("tensorboard/") or path.endswith(".keras") or path == "history.csv"
                          or path.startswith("checkpoints/ckpt-"))
  files = [snapshot(workdir) for workdir in (w, reference)]
  names = [sorted(path for path in found if not path.startswith("tensorboard/")) for found in files]
  assert names[0] == names[1]
  different = [path for path in files[1] if not ignored(path) and files[0][path] != files[1][path]]
  assert not different, different


@pytest.fixture(scope="module")
def family_chain(tmp_path_factory):
  """The kills of every family but anogan, each at the subtlest point: checkpoint 3's files written,
  not committed, and the history row of epoch 2 already appended. One chain of processes for them
  all (conftest.Harness, the commands' main): each reruns the previous family's train, makes the
  next family's uninterrupted run (tiny_flags + CHAIN_FLAGS: a train, checked by
  checked_clean_train), then starts that family's train, which its hook SIGKILLs; between two
  processes the killed workdir is read. So each rerun runs in another process than its family's
  uninterrupted run. The last family's rerun is left "pending" for a process that the anogan test
  starts anyway (take_pending, record_pending), else family_kills runs it in a process of its own.
  No evaluate: what it reads (flags.txt, the networks, threshold.json) is compared (assert_same_run's
  weights, assert_same_files), and the anogan test evaluates a rerun workdir.

  {"out": family_kills' dict, the last family's without its rerun's result while it is pending,
  "pending": the last family's rerun case, or None once taken, "last": that family, "root": a folder}."""
  if not os.path.isfile(os.path.join(os.environ.get("ANOGAN_DATA_DIR", ""), "mnist.npz")):
    pytest.skip("needs mnist.npz in $ANOGAN_DATA_DIR")
  root = tmp_path_factory.mktemp("family_kills")
  workdirs = {family: str(root / family / "w") for family in OTHER_FAMILIES}
  cleans = {family: str(root / family / "clean") for family in OTHER_FAMILIES}
  flags = {family: tiny_flags(family) + CHAIN_FLAGS for family in OTHER_FAMILIES}
  rerun = lambda family: ("train", [f"--workdir={workdirs[family]}", *flags[family]])
  out, previous = {}, None
  for step, family in enumerate(OTHER_FAMILIES):
    cases = [rerun(previous)] if previous else []
    cases.append(("train", [f"--workdir={cleans[family]}", *flags[family]]))
    cases.append(("train", [f"--workdir={workdirs[family]}", *flags[family]], "checkpoint_written@2=kill"))
    harness = Harness(str(root), cases, name=f"chain{step}")
    results = harness.killed()
    if previous:
      out[previous] += tuple(results[:1])
    w = workdirs[family]
    checked_clean_train(family, cleans[family], results[-1])
    out[family] = (w, cleans[family], harness.proc.returncode, epochs(w), latest(w),
                   os.path.exists(os.path.join(w, "checkpoints", "ckpt-3.index")))
    previous = family
  return {"out": out, "pending": [rerun(previous)], "last": previous, "root": str(root)}


def take_pending(chain):
  """The cases family_chain left pending (none if taken already), for the caller's next process to
  run first; the caller then calls record_pending."""
  cases, chain["pending"] = chain["pending"] or [], None
  return cases


def record_pending(chain, cases, harness):
  """Stores the results of `cases` (take_pending), run first by `harness`, as family_chain's results."""
  if not cases:
    return
  results = []
  if os.path.exists(harness.out_path):
    with open(harness.out_path) as f:
      results = json.load(f)[:len(cases)]
  if len(results) < len(cases):
    results = [{"code": "not run", "stderr": f"the process that took it ended first: {harness.log_path}"}]
  chain["out"][chain["last"]] += tuple(results)


@pytest.fixture(scope="module")
def family_kills(family_chain):
  """{family: (its workdir, its uninterrupted run's workdir, the killed run's exit code, epochs and
  latest checkpoint after the kill, whether checkpoint 3's files were there, its rerun's result)}
  for every family but anogan (family_chain, its pending rerun run here if no test took it)."""
  cases = take_pending(family_chain)
  if cases:
    harness = Harness(family_chain["root"], cases, name="chain_last")
    try:
      harness.results()
    finally:
      record_pending(family_chain, cases, harness)
  return family_chain["out"]


def checked_clean_train(family, workdir, result):
  """`workdir`, checked to be a complete training of `family` (tiny_flags + CHAIN_FLAGS; `result` its result)."""
  assert result["code"] == 0, result["stderr"][-3000:]
  assert len(history(workdir)) == 4
  record = json.load(open(os.path.join(workdir, "threshold.json")))
  assert record["model"] == family and record["n_val"] > 0
  flags_txt = open(os.path.join(workdir, "flags.txt")).read()
  assert "--deterministic=true" in flags_txt and "--val_fraction=0.1" in flags_txt
  assert f"--model={family}" in flags_txt.splitlines()
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize("family", OTHER_FAMILIES)
def test_kill9_of_every_family_then_rerun_matches_an_uninterrupted_run(family, family_kills):
  # One kill point, the subtlest (family_kills): the state file still names ckpt-2, and the rerun
  # drops the history row of epoch 2, trains epochs 2 and 3 again, exports, scores the held-out
  # normals. The rerun runs through the command's main (the anogan test above kills and reruns
  # `python -m anogan_tf.*` itself).
  w, clean, code, killed_epochs, killed_latest, written, rerun = family_kills[family]
  assert code == -signal.SIGKILL
  assert killed_epochs == [0, 1, 2] and killed_latest == "ckpt-2" and written
  assert rerun["code"] == 0, rerun["stderr"]
  assert epochs(w) == [0, 1, 2, 3] and latest(w) == "ckpt-4"
  for name in models.family(family).NETWORKS:
    assert os.path.getsize(os.path.join(w, f"{name}.keras")) > 0, name
  assert not [n for n in os.listdir(w) if n.startswith(".")]  # no temporary left behind
  assert_same_run(w, clean, evaluated=False)
  assert_same_files(w, clean)


# --- 2. bad input: one-line error, non-zero exit, no traceback, workdir untouched



def _npz(folder, name="mnist.npz", n_train=160, n_test=40, x_train=None, x_test=None, y_train=None):
  os.makedirs(folder, exist_ok=True)
  pixels = lambda n, seed: np.round((synthetic_images(n, seed=seed)[..., 0] + 1) * 127.5).astype(np.uint8)
  arrays = dict(x_train=pixels(n_train, 0) if x_train is None else x_train,
                y_train=np.arange(n_train) % 2 if y_train is None else y_train,
                x_test=pixels(n_test, 1) if x_test is None else x_test, y_test=np.arange(n_test) % 2)
  np.savez(os.path.join(folder, name), **arrays)
  return str(folder)


def _bad_data(root):
  """{case: data folder}: each holds a mnist.npz (or nothing) with one thing wrong."""
  good = np.round((synthetic_images(160)[..., 0] + 1) * 127.5)
  with_nan = good.astype(np.float32)
  with_nan[3, 10, 10] = np.nan
  test_inf = np.round((synthetic_images(40, seed=1)[..., 0] + 1) * 127.5).astype(np.float32)
  test_inf[5, 0, 0] = np.inf
  folders = {
      "size": _npz(root / "size", x_train=np.zeros((160, 32, 32), np.uint8) + 200),
      "channels": _npz(root / "channels", x_train=np.repeat(good[..., None], 3, -1).astype(np.uint8)),
      "dtype": _npz(root / "dtype", x_train=good.astype(np.uint8).astype(str)),
      "scaled": _npz(root / "scaled", x_train=(good / 255).astype(np.float32)),
      "range": _npz(root / "range", x_train=(good * 4).astype(np.int16)),
      "nan": _npz(root / "nan", x_train=with_nan),
      "inf": _npz(root / "inf", x_test=test_inf),
      "labels": _npz(root / "labels", y_train=np.arange(150) % 2),
      "empty": str(root / "empty"),
      "missing": str(root / "does_not_exist"),
      "other_file": _npz(root / "other_file", name="fashion_mnist.npz"),
      "corrupt": str(root / "corrupt"),
      "truncated": str(root / "truncated"),
  }
  os.makedirs(folders["empty"])
  os.makedirs(folders["corrupt"])
  with open(os.path.join(folders["corrupt"], "mnist.npz"), "wb") as f:
    f.write(np.random.default_rng(0).bytes(5000))
  good_file = open(os.path.join(_npz(root / "good_copy"), "mnist.npz"), "rb").read()
  os.makedirs(folders["truncated"])
  with open(os.path.join(folders["truncated"], "mnist.npz"), "wb") as f:
    f.write(good_file[:len(good_file) // 2])
  return folders


# data folder case: fragments of the error line (the problem, the fix)
DATA_CASES = {
    "size": ("shape (32, 32, 1) per image, expected (28, 28, 1)", "--dataset"),
    "channels": ("have 3 channels (28, 28, 3) per image, expected (28, 28, 1)", "channel count"),
    "dtype": ("have dtype <U3", "uint8"),
    "scaled": ("values in [0, 1] only", "np.round(x * 255)"),
    "range": ("expected pixels in 0..255", "store uint8"),
    "nan": ("x_train images contain NaN or inf", "repair"),
    "inf": ("x_test images contain NaN or inf", "repair"),
    "labels": ("150 labels for 160 images", "one integer label per image"),
    "empty": ("mnist.npz is missing", "--data_dir"),
    "missing": ("does_not_exist does not exist", "--data_dir"),
    "other_file": ("mnist.npz is missing", "download it"),
    "corrupt": ("is not a readable .npz file", "good copy"),
    "truncated": ("is not a readable .npz file", "good copy"),
}


def _damage_checkpoint(workdir, how, number=1):
  ckpt = os.path.join(workdir, "checkpoints")
  data_file = os.path.join(ckpt, f"ckpt-{number}.data-00000-of-00001")
  if how == "truncated":
    with open(data_file, "r+b") as f:
      f.truncate(os.path.getsize(data_file) // 3)
  elif how == "garbage_index":
    with open(os.path.join(ckpt, "ckpt-1.index"), "wb") as f:
      f.write(b"\x00not an index" * 50)
  elif how == "state":
    with open(os.path.join(ckpt, "checkpoint"), "w") as f:
      f.write("garbage {{{\n")
  elif how == "dangling":
    for name in os.listdir(ckpt):
      if name.startswith("ckpt-1."):
        os.remove(os.path.join(ckpt, name))


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
  """(a good data folder (_npz), get): get(family) is (config, workdir) of that family trained one
  epoch of TINY_CONFIG on the folder's class 1, trained on first use. Shared by the bad-input
  tests, which copy a workdir before they damage it and never change these."""
  root = tmp_path_factory.mktemp("trained_tiny")
  good = _npz(root / "data" / "good")
  runs = {}

  def get(family):
    if family not in runs:
      config = Config(model=family, data_dir=good, normal_classes=(1,), epochs=1, e_filters=(4, 8), draem_width=4,
                      **TINY_CONFIG)
      runs[family] = (config, str(root / family))
      train_lib.train(config, runs[family][1], progress=False)
    return runs[family]
  return good, get


@pytest.mark.slow
def test_bad_input_is_a_one_line_error_and_leaves_the_workdir_untouched(tmp_path, trained_tiny):
  data = _bad_data(tmp_path / "data")
  good, get = trained_tiny
  _, trained = get("anogan")

  def copy(name, damage=None):
    path = str(tmp_path / "w" / name)
    shutil.copytree(trained, path)
    if damage:
      damage(path)
    return path

  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder\n")
  fresh = str(tmp_path / "fresh")
  train_cases = {}  # name: (argv, watched path, fragments)
  for case, fragments in DATA_CASES.items():
    w = copy(f"data_{case}")  # resuming a trained workdir with more epochs, bad data
    train_cases[case] = ([f"--workdir={w}", f"--data_dir={data[case]}", "--epochs=3"], w, fragments)
  w = copy("other_settings")
  train_cases["other_settings"] = ([f"--workdir={w}", "--lr=0.5"], w,
                                   ("was trained with other settings (--lr=0.001, now 0.5)", "--overwrite"))
  for how, fragments in {"truncated": ("ckpt-1 cannot be read", "--overwrite"),
                         "garbage_index": ("ckpt-1 cannot be read", "--overwrite"),
                         "state": ("is damaged", "--overwrite"),
                         "dangling": ("ckpt-1 named by", "--overwrite")}.items():
    w = copy(f"checkpoint_{how}", lambda p, how=how: _damage_checkpoint(p, how))
    train_cases[f"checkpoint_{how}"] = ([f"--workdir={w}", "--epochs=3"], w, fragments)
  w = copy("flags_txt", lambda p: open(os.path.join(p, "flags.txt"), "a").write("--lamda=0.3\n"))
  train_cases["damaged_flags_txt"] = ([f"--workdir={w}", "--epochs=3"], w,
                                      ("flags.txt is damaged (unknown setting 'lamda'", "--overwrite"))
  w = copy("dataset")
  train_cases["unknown_dataset"] = ([f"--workdir={w}", "--dataset=imagenet"], w,
                                    ("unknown dataset 'imagenet'", "mnist, fashion_mnist, cifar10"))
  train_cases["empty_normal_class"] = ([f"--workdir={fresh}", f"--data_dir={good}", "--normal_classes=7"], fresh,
                                       ("no training images of class 7", "--normal_classes"))
  w = copy("flag")
  train_cases["unknown_flag"] = ([f"--workdir={w}", "--bogus=1"], w, ("Unknown command line flag 'bogus'", "--helpfull"))
  train_cases["workdir_under_a_file"] = ([f"--workdir={a_file}/sub", f"--data_dir={good}"], str(a_file),
                                         ("cannot create workdir", "choose another --workdir"))
  train_cases["unknown_model"] = ([f"--workdir={fresh}", f"--data_dir={good}", "--model=gan"], fresh,
                                  ("unknown --model 'gan'", "use one of anogan"))

  no_flags = str(tmp_path / "w" / "no_flags")
  os.makedirs(no_flags)
  open(os.path.join(no_flags, "notes.txt"), "w").write("hello\n")
  evaluate_cases = {
      "garbage_model": (copy("gen", lambda p: open(os.path.join(p, "generator.keras"), "wb").write(b"PK\x03\x04junk")),
                        ("generator.keras cannot be loaded", "rerun training")),
      "truncated_model": (copy("disc", lambda p: os.truncate(os.path.join(p, "discriminator.keras"), 1000)),
                          ("discriminator.keras cannot be loaded", "rerun training")),
      "missing_model": (copy("nogen", lambda p: os.remove(os.path.join(p, "generator.keras"))),
                        ("generator.keras is missing", "train first")),
      "not_a_workdir": (no_flags, ("holds no flags.txt", "train first")),
      "bad_data": (copy("eval_data"), ("shape (32, 32, 1) per image", "--dataset")),
  }
  evaluate_argv = {case: [f"--workdir={w}"] + (["--data_dir=" + data["size"]] if case == "bad_data" else [])
                   for case, (w, _) in evaluate_cases.items()}

  # One case also as a real process: the exit code and stderr of `python -m` itself, for an error
  # found after TensorFlow has loaded. The others run through the command's main in this process.
  real = {"size"}
  watched = {case: spec[1] for case, spec in train_cases.items()}
  watched.update({f"evaluate_{case}": w for case, (w, _) in evaluate_cases.items()})
  before = {case: snapshot(path) for case, path in watched.items()}

  real_procs = {}
  for case in sorted(real):  # own copies: a real process and the in-process case would race for the lock
    argv, path, _ = train_cases[case]
    if path.startswith(str(tmp_path / "w")):
      own = copy(f"real_{case}")
      argv = [a.replace(path, own) for a in argv]
    real_procs[case] = start("anogan_tf.train", *argv)

  results = dict(zip(train_cases, run_cases("train", [spec[0] for spec in train_cases.values()])))
  results.update(zip((f"evaluate_{case}" for case in evaluate_argv), run_cases("evaluate", evaluate_argv.values())))
  fragments = {case: spec[2] for case, spec in train_cases.items()}
  fragments.update({f"evaluate_{case}": f for case, (_, f) in evaluate_cases.items()})
  for case, result in results.items():
    assert result["code"] == 2, (case, result)
    line = error_line(result["stderr"])
    for fragment in fragments[case]:
      assert fragment in line, (case, line)
  for case, proc in real_procs.items():
    done = finish(proc)
    assert done.returncode == 2, (case, done.stderr)
    line = error_line(done.stderr)
    assert all(fragment in line for fragment in fragments[case]), (case, line)
  for case, path in watched.items():
    assert snapshot(path) == before[case], f"{case} changed {path}"
  assert set(results) == set(fragments)


def _run_cases(cases_by_tool):
  """Runs {tool: {case: argv}} through each command's main in this process; returns
  {case: {"code", "stderr", "stdout"}}."""
  results = {}
  for tool, cases in cases_by_tool.items():
    results.update(zip(cases, run_cases(tool, cases.values())))
  return results


@pytest.mark.slow
@pytest.mark.skipif(not OTHER_IMAGE_FAMILIES, reason="anogan is the only family of images")
def test_bad_input_through_every_familys_own_files_is_a_one_line_error(tmp_path, trained_tiny, family_kills):
  # For each family but anogan (whose full battery is above): its damaged checkpoint and
  # <network>.keras files, a workdir of another family, and bad images on the way to its scorer.
  # Every case ends with one error line and exit code 2 and leaves the workdir (and a previous
  # score output) as it was. All families' cases run in one process per tool. A family's workdir
  # is a copy of its uninterrupted run in family_kills (4 epochs, checkpoints 3 and 4), made
  # --deterministic=false: op determinism is process-wide, and these cases run in this process.
  from anogan_tf import score_lib
  bad_data = _npz(tmp_path / "data" / "nan", x_train=np.full((160, 28, 28), np.nan, np.float32))
  inputs = _score_inputs(tmp_path / "in")
  trained = {"anogan": trained_tiny[1]("anogan")[1]}
  for family in OTHER_IMAGE_FAMILIES:
    trained[family] = str(tmp_path / "trained" / family)
    shutil.copytree(family_kills[family][1], trained[family])
    flags_txt = os.path.join(trained[family], "flags.txt")
    text = open(flags_txt).read()
    assert "--deterministic=true\n" in text
    with open(flags_txt, "w") as f:
      f.write(text.replace("--deterministic=true\n", "--deterministic=false\n"))

  def copy(family, case, damage=None):
    path = str(tmp_path / "w" / f"{family}_{case}")
    shutil.copytree(trained[family], path)
    if damage:
      damage(path)
    return path

  cases = {"train": {}, "evaluate": {}, "score": {}}
  fragments, watched, succeeded = {}, {}, {}
  for family in OTHER_IMAGE_FAMILIES:
    first, last = models.family(family).NETWORKS[0], models.family(family).NETWORKS[-1]
    specs = {
        ("train", "checkpoint_truncated"): (copy(family, "ckpt", lambda p: _damage_checkpoint(p, "truncated", 4)),
                                            ["--epochs=5"], ("ckpt-4 cannot be read", "--overwrite")),
        ("train", "anogan_workdir"): (copy("anogan", f"as_{family}"), [f"--model={family}", "--epochs=3"],
                                      (f"holds a model trained with --model=anogan (its flags.txt), not --model={family}",
                                       f"use another --workdir for --model={family}", "--overwrite")),
        ("train", "as_anogan"): (copy(family, "as_anogan"), ["--model=anogan", "--epochs=5"],
                                 (f"holds a model trained with --model={family} (its flags.txt), not --model=anogan",)),
        ("train", "nan_data"): (copy(family, "nan_data"), [f"--data_dir={bad_data}", "--epochs=5"],
                                ("x_train images contain NaN or inf", "repair")),
        ("evaluate", "garbage_model"): (copy(family, "garbage", lambda p: open(os.path.join(p, f"{first}.keras"), "wb")
                                             .write(b"PK\x03\x04junk")),
                                        [], (f"{first}.keras cannot be loaded", "rerun training")),
        ("evaluate", "missing_model"): (copy(family, "missing", lambda p: os.remove(os.path.join(p, f"{last}.keras"))),
                                        [], (f"{last}.keras is missing", "train first")),
        ("evaluate", "other_model"): (copy(family, "eval_as_anogan"), ["--model=anogan"],
                                      (f"--model=anogan does not match the workdir, trained with --model={family}",
                                       "drop --model")),
        ("score", "truncated_model"): (copy(family, "score_trunc", lambda p: os.truncate(os.path.join(p, f"{last}.keras"), 1000)),
                                       [f"--input={inputs['good']}", f"--output={tmp_path / 'out' / family}"],
                                       (f"{last}.keras cannot be loaded", "rerun training")),
    }
    for input_case in ("wrong_shape", "nan"):  # pictures of any size are read (resized), arrays must fit
      specs[("score", input_case)] = (trained[family], [f"--input={inputs[input_case]}",
                                                        f"--output={tmp_path / 'out' / family}"],
                                      SCORE_INPUT_CASES[input_case])
    for (tool, case), (workdir, argv, expected) in specs.items():
      name = f"{family}_{case}"
      cases[tool][name] = [f"--workdir={workdir}", *argv]
      fragments[name] = expected
      watched[name] = workdir
    # a previous good output, which no failing score may change; and a good score of the family
    score_lib.score_images(Config.from_flagfile_text(open(os.path.join(trained[family], "flags.txt")).read()),
                           trained[family], inputs["good"], str(tmp_path / "out" / family), progress=False)
    watched[f"{family}_output"] = str(tmp_path / "out" / family)
    succeeded[f"{family}_good"] = tmp_path / "good_out" / family
    cases["score"][f"{family}_good"] = [f"--workdir={trained[family]}", f"--input={inputs['good']}",
                                        f"--output={succeeded[f'{family}_good']}"]
  before = {case: snapshot(path) for case, path in watched.items()}

  results = _run_cases(cases)
  assert set(results) == set(fragments) | set(succeeded)
  for case, expected in fragments.items():
    result = results[case]
    assert result["code"] == 2, (case, result)
    line = error_line(result["stderr"])
    assert all(fragment in line for fragment in expected), (case, line)
  for case, path in watched.items():
    assert snapshot(path) == before[case], f"{case} changed {path}"
  for case, out in succeeded.items():
    assert results[case]["code"] == 0, (case, results[case])
    with open(out / "scores.csv", newline="") as f:
      rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == ["img0.png", "img1.png", "img2.png"]
    assert list(rows[0])[:3] == ["file", "score", "is_anomaly"] and list(rows[0])[-1] == "report"


def test_workdir_lock_and_damaged_checkpoint_state_in_the_library(tmp_path):
  # tf.train.latest_checkpoint would say None for a damaged state file and training would
  # silently start over; latest_checkpoint refuses instead.
  ckpt = tmp_path / "checkpoints"
  ckpt.mkdir()
  assert checkpoints.latest_checkpoint(str(ckpt)) is None
  (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-9"\n')
  with pytest.raises(AnoganError, match="ckpt-9 named by"):
    checkpoints.latest_checkpoint(str(ckpt))
  lock = workdir_lib.lock_workdir(str(tmp_path))
  with pytest.raises(AnoganError, match="another train is running on"):
    workdir_lib.lock_workdir(str(tmp_path))
  lock.release()
  workdir_lib.lock_workdir(str(tmp_path)).release()  # released: free again


def test_whole_files_of_other_networks_are_told_apart_from_damaged_ones(tmp_path):
  """A workdir whose checkpoint and .keras files are whole but hold other networks (written by an
  older version whose networks differ) says so and how to start over, not that they are damaged."""
  import tensorflow as tf
  ckpt = tmp_path / "checkpoints"
  tf.train.Checkpoint(weights=tf.Variable(tf.zeros(2))).write(str(ckpt / "ckpt-1"))
  (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')

  class Driver:
    epoch = tf.Variable(0)

    def checkpoint(self):
      return tf.train.Checkpoint(weights=tf.Variable(tf.zeros(3)), epoch=self.epoch)

  with pytest.raises(AnoganError, match=r"ckpt-1 does not match the networks these settings build .*--overwrite"):
    checkpoints.restore_checkpoint(Driver(), str(ckpt))
  os.truncate(ckpt / "ckpt-1.data-00000-of-00001", 4)
  with pytest.raises(AnoganError, match=r"ckpt-1 cannot be read \(.*damaged or truncated"):
    checkpoints.restore_checkpoint(Driver(), str(ckpt))

  family = models.family("ae")
  config = Config(model="ae", latent_dim=4, g_dense_channels=4, g_filters=(4, 4), e_filters=(4, 4))
  for name, network in family.build_networks(config).items():
    network.save(str(tmp_path / f"{name}.keras"))
  wider = family.build_networks(config.replace(latent_dim=8))["decoder"]  # the same class, other weights
  wider.save(str(tmp_path / "other.keras"))
  with zipfile.ZipFile(tmp_path / "other.keras") as other, zipfile.ZipFile(tmp_path / "decoder.keras") as ours, \
       zipfile.ZipFile(tmp_path / "mixed.keras", "w") as mixed:
    for item in ours.namelist():  # our config with the other network's weights
      mixed.writestr(item, (other if item.endswith(".h5") else ours).read(item))
  os.replace(tmp_path / "mixed.keras", tmp_path / "decoder.keras")
  with pytest.raises(AnoganError, match=r"decoder.keras holds other networks than .*--overwrite") as error:
    workdir_lib.load_networks(str(tmp_path), family)
  assert "\n" not in str(error.value)
  os.truncate(tmp_path / "decoder.keras", 100)
  with pytest.raises(AnoganError, match=r"decoder.keras cannot be loaded .*rerun training"):
    workdir_lib.load_networks(str(tmp_path), family)


# --- 3. training health

def _synthetic(n=128):
  x = synthetic_images(n)
  return OneClassData(x_train=x, x_test=x[:8], y_test=np.arange(8) % 2, classes_test=np.zeros(8, int),
                      test_indices=np.arange(8))


@pytest.mark.slow
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  data = _synthetic()
  w = str(tmp_path / "w")
  config = Config(epochs=5, **TINY_CONFIG)
  monkeypatch.setenv("ANOGAN_TEST_HOOK", "loss@2=nan")
  with pytest.raises(AnoganError, match=r"diverged at epoch 3 \(g_loss=nan\); kept the checkpoint of epoch 2: "
                                        r"rerun with --epochs=2"):
    train_lib.train(config, w, data=data, progress=False)
  assert epochs(w) == [0, 1] and latest(w) == "ckpt-2"
  assert sorted(os.listdir(os.path.join(w, "samples"))) == ["epoch_0001.png", "epoch_0002.png"]
  assert not os.path.exists(os.path.join(w, "generator.keras"))
  monkeypatch.delenv("ANOGAN_TEST_HOOK")
  train_lib.train(config.replace(epochs=2), w, data=data, progress=False)  # as the message says
  assert epochs(w) == [0, 1] and os.path.exists(os.path.join(w, "generator.keras"))

  # A real divergence: Adam's steps are ~lr in size, so lr=1e30 blows the weights up at once.
  w = str(tmp_path / "diverges")
  with pytest.raises(AnoganError, match=r"diverged at epoch 1 \(.*nan.*\); no checkpoint was saved"):
    train_lib.train(config.replace(lr=1e30), w, data=data, progress=False)
  assert latest(w) is None and epochs(w) == []


@pytest.mark.slow
def test_collapsed_discriminator_is_reported_once(tmp_path, caplog):
  rows = lambda losses: [{"epoch": i, "d_loss": v} for i, v in enumerate(losses)]
  assert history_lib.collapse_warning(rows([0.5] + [1e-4] * 4)) is None
  message = history_lib.collapse_warning(rows([0.5] + [1e-4] * 5))
  assert "d_loss < 0.001 for 5 epochs in a row (epochs 2-6)" in message
  assert history_lib.collapse_warning(rows([0.5] + [1e-4] * 6)) is None  # said once per streak
  # A real collapse: a generator that never trains (g_steps=0) loses to D within a few epochs.
  caplog.set_level("WARNING")
  config = Config(epochs=10, g_steps=0, lr=0.03, **TINY_CONFIG)
  history_rows = train_lib.train(config, str(tmp_path / "w"), data=_synthetic(), progress=False)
  assert history_rows[-1]["d_loss"] < 1e-3
  warnings = [r.getMessage() for r in caplog.records if "discriminator has collapsed" in r.getMessage()]
  assert len(warnings) == 1, caplog.text


def test_train_examples_limits_the_training_images(tmp_path):
  folder = _npz(tmp_path / "data")
  full = load_one_class(Config(data_dir=folder, normal_classes=(1,)))
  some = load_one_class(Config(data_dir=folder, normal_classes=(1,), train_examples=30))
  assert len(full.x_train) == 80 and len(some.x_train) == 30
  np.testing.assert_array_equal(some.x_train, full.x_train[:30])
  assert "train_examples" not in RESUMABLE_FIELDS  # it changes what is trained
  assert "deterministic" in RESUMABLE_FIELDS


# --- 2b. score: the same for a user's own images; nothing of a previous output is overwritten

def _score_inputs(root):
  """{case: --input}: each with one thing wrong, plus a good folder and two of unusual names."""
  from PIL import Image
  images = np.round((synthetic_images(4)[..., 0] + 1) * 127.5).astype(np.uint8)
  def folder(name, files):
    path = root / name
    path.mkdir(parents=True)
    for file_name, content in files.items():
      if isinstance(content, bytes):
        (path / file_name).write_bytes(content)
      else:
        Image.fromarray(content).save(path / file_name)
    return str(path)
  good_png = open(folder("png_bytes", {"a.png": images[0]}) + "/a.png", "rb").read()
  inputs = {
      "good": folder("good", {f"img{i}.png": image for i, image in enumerate(images[:3])}),
      "size": folder("size", {"a.png": images[0], "big.png": np.zeros((32, 32), np.uint8)}),
      "channels": folder("channels", {"rgb.png": np.stack([images[0], 255 - images[0], images[0]], -1)}),
      "corrupt": folder("corrupt", {"a.png": images[0], "bad.png": b"\x89PNG\r\n\x1a\nnot really"}),
      "truncated": folder("truncated", {"cut.png": good_png[:len(good_png) // 2]}),
      "empty": folder("empty", {"readme.txt": b"no pictures here\n"}),
      "glob_nothing": str(root / "good" / "*.jpeg"),
      "missing": str(root / "does_not_exist"),
      "unreadable": folder("unreadable", {"a.png": images[0], "locked.png": images[1]}),
      "duplicate_stems": folder("duplicate_stems", {"a.png": images[0], "a.jpg": images[1]}),
      "comma": folder("comma", {"x,y.png": images[0], 'say "hi".png': images[1], "plain.png": images[2]}),
  }
  folder("two_folders/d1", {"x.png": images[0]})
  folder("two_folders/d2", {"x.png": images[1]})
  inputs["same_name_two_folders"] = str(root / "two_folders" / "*" / "x.png")
  locked = os.path.join(inputs["unreadable"], "locked.png")
  if os.geteuid() == 0:  # root reads a chmod 000 file: a dangling link is unreadable to anyone
    os.remove(locked)
    os.symlink(os.path.join(inputs["unreadable"], "gone.png"), locked)
  else:
    os.chmod(locked, 0)
  nan = images[:2].astype(np.float32) / 127.5 - 1
  nan[1, 5, 5] = np.nan
  arrays = {"nan": nan, "zero_d": np.float32(0.5), "wrong_shape": np.zeros((2, 28, 28, 3), np.uint8)}
  for case, array in arrays.items():
    np.save(root / f"{case}.npy", array)
    inputs[case] = str(root / f"{case}.npy")
  np.savez(root / "no_array.npz")
  inputs["npz_no_array"] = str(root / "no_array.npz")
  return inputs


# case: fragments of the error line (the problem, the fix)
SCORE_INPUT_CASES = {
    "channels": ("rgb.png is a colour image", "grayscale (1-channel) images", "convert it to grayscale"),
    "corrupt": ("bad.png is not a readable image", "remove or replace it"),
    "truncated": ("cut.png is not a readable image", "remove or replace it"),
    "empty": ("no PNG/JPEG images in", ".png, .jpg or .jpeg"),
    "glob_nothing": ("*.jpeg matches no files", "--input"),
    "missing": ("does_not_exist does not exist", "--input"),
    "unreadable": ("cannot read", "locked.png", "check that it exists and is readable"),
    "nan": ("image 1 of", "NaN or inf", "repair or drop"),
    "zero_d": ("holds a single value (a 0-d array), not images", "(n, 28, 28, 1)"),
    "wrong_shape": ("shape (2, 28, 28, 3)", "the model expects (n, 28, 28, 1)"),
    "npz_no_array": ("holds no arrays", "np.savez"),
}


@pytest.mark.slow
def test_score_bad_input_is_a_one_line_error_and_overwrites_nothing(tmp_path, trained_tiny):
  from anogan_tf import score_lib
  config, trained = trained_tiny[1]("anogan")
  inputs = _score_inputs(tmp_path / "in")
  out = str(tmp_path / "out")  # a previous good output: no failing score may change it
  score_lib.score_images(config, trained, inputs["good"], out, progress=False)
  assert len(os.listdir(os.path.join(out, "reports"))) == 3
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder\n")
  no_flags = tmp_path / "no_flags"
  no_flags.mkdir()

  cases = {case: ([f"--workdir={trained}", f"--input={inputs[case]}", f"--output={out}"], fragments)
           for case, fragments in SCORE_INPUT_CASES.items()}
  good = [f"--workdir={trained}", f"--input={inputs['good']}"]
  cases["output_is_a_file"] = (good + [f"--output={a_file}"], (f"--output {a_file} is a file, not a folder",
                                                                "choose another --output"))
  cases["output_under_a_file"] = (good + [f"--output={a_file}/sub/out"],
                                  (f"cannot create --output {a_file}/sub/out: {a_file} is a file", "choose another --output"))
  if os.geteuid() != 0:  # root writes anywhere; test_score.py covers it with a refusing os.makedirs
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    cases["output_not_writable"] = (good + [f"--output={locked}/out"], ("cannot write to --output", "Permission denied"))
  cases["not_a_workdir"] = ([f"--workdir={no_flags}", f"--input={inputs['good']}", f"--output={out}"],
                            ("holds no flags.txt", "train first"))
  cases["no_input"] = ([f"--workdir={trained}", f"--output={out}"], ("--input is required",))
  # Not errors: every image gets its own report, and scores.csv reads back to the file names.
  successes = {case: [f"--workdir={trained}", f"--input={inputs[case]}", f"--output={tmp_path / case}"]
               for case in ("duplicate_stems", "same_name_two_folders", "comma", "size")}

  before = snapshot(out)
  names = list(cases) + list(successes)
  real = start("anogan_tf.score", *cases["output_under_a_file"][0])  # one as a real `python -m`
  results = dict(zip(names, run_cases("score", [cases[c][0] for c in cases] + list(successes.values()))))
  for case, (_, fragments) in cases.items():
    result = results[case]
    assert result["code"] == 2, (case, result)
    line = error_line(result["stderr"])
    for fragment in fragments:
      assert fragment in line, (case, line)
  done = finish(real)
  assert done.returncode == 2, done.stderr
  assert all(f in error_line(done.stderr) for f in cases["output_under_a_file"][1]), done.stderr
  assert snapshot(out) == before
  assert a_file.read_text() == "not a folder\n"
  assert not os.path.exists(no_flags / "out")

  for case in successes:
    assert results[case]["code"] == 0, (case, results[case])
  expected = {"duplicate_stems": ["a.jpg", "a.png"], "same_name_two_folders": ["d1/x.png", "d2/x.png"],
              "comma": ["plain.png", 'say "hi".png', "x,y.png"], "size": ["a.png", "big.png"]}  # resized
  for case, names in expected.items():
    with open(tmp_path / case / "scores.csv", newline="", encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == names, case
    assert [row["report"] for row in rows] == [f"reports/{n}.png" for n in names], case
    for row in rows:
      assert os.path.getsize(tmp_path / case / row["report"]) > 0, (case, row)
      assert float(row["score"]) > 0
