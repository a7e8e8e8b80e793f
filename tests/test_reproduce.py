"""experiments/reproduce.py: presets that differ only in mapping share one GAN, a finished run is
not redone, and a lost record is redone alone; it shows progress as the commands do and no
TensorFlow start-up notices. Tiny settings: what is tested is the bookkeeping."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from anogan_tf.cli.quiet import lines_to_show

TINY = "--epochs=1 --train_examples=64 --test_examples=64 --map_steps=2,2 --batch_size=32"


def reproduce(tmp_path, *args):
  """Runs the driver as a user does; returns its stdout and its stderr's lines (each update of a
  progress bar a line of its own)."""
  command = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--dataset=mnist",
             f"--runs_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}", f"--extra={TINY}", *args]
  done = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout, [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]


def reproduce_here(tmp_path, capsys, monkeypatch, *args):
  """reproduce() through the driver's main in this process, and each command it runs through its
  main(argv) here too, its output appended to the run's log as run_logged does (reproduce()
  tests the commands as processes): its stdout and stderr's lines as reproduce() returns them."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import reproduce as rp
  from in_process import run_logged

  monkeypatch.setattr(rp, "run_logged", run_logged)
  monkeypatch.chdir(ROOT)  # main() moves there; back afterwards
  capsys.readouterr()
  assert rp.main(["--dataset=mnist", f"--runs_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}",
                  f"--extra={TINY}", *args]) == 0
  out, err = capsys.readouterr()
  return out, [line for line in err.replace("\r", "\n").splitlines() if line.strip()]


def startup_notices(lines):
  """The lines of TensorFlow start-up noise that the commands hide (anogan_tf.cli.quiet.KNOWN_NOISE)."""
  shown = [line.encode() for line in lines]
  return [line for line in shown if line not in list(lines_to_show(shown))]


def records(tmp_path, preset):
  folder = tmp_path / "results" / "runs" / f"mnist_{preset}"
  return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


@pytest.mark.slow
def test_presets_share_a_gan_resume_per_run_and_redo_only_what_is_missing(tmp_path, mnist_dir, capsys, monkeypatch):
  # The first run as a user runs it (the driver and its commands processes of their own, their
  # start-up notices hidden): seed000 alone, its GAN trained, then scored. The reruns through its
  # main in this process, their commands too: paper, which differs from seed000 only in mapping,
  # scores seed000's GAN; then nothing is redone; then a lost record is redone alone. (Presets
  # sharing a GAN in one run, all scored after one training: tests/test_compare.py, six of them.)
  out, err = reproduce(tmp_path, "--presets=seed000", "--classes=0", "--seeds=0")
  assert startup_notices(err) == []
  # Progress as the commands show it, on stderr: the run, its training's and scoring's bars, its time.
  assert err[0] == "run 1 of 1: mnist class 0 seed 0, presets seed000", err
  assert re.fullmatch(r"run 1 of 1: mnist class 0 seed 0 done in \d+ s; no runs left", err[-1]), err
  finished, step = {}, None  # step -> the bars its command completed
  for line in err[1:-1]:
    if line.startswith("  "):
      step = line.strip()
      finished[step] = set()
    elif re.match(r"\w+: 100%\|", line):
      finished[step].add(line.split(":")[0])
  train_step = next(iter(finished))
  assert re.fullmatch(r"seed000: train \(GAN \w{8}\)", train_step), err
  assert finished == {train_step: {"train"}, "seed000: evaluate": {"score"}}, err
  assert out.count(": AUROC ") == 1  # the results stay on stdout

  # paper shares seed000's GAN: scored on it, not trained again.
  out, err = reproduce_here(tmp_path, capsys, monkeypatch, "--presets=seed000,paper", "--classes=0", "--seeds=0")
  assert err[0] == "run 1 of 1: mnist class 0 seed 0, presets paper" and "  paper: evaluate" in err, err
  assert not any("train" in line for line in err) and startup_notices(err) == [], err
  assert out.count(": AUROC ") == 1
  seed000, paper = records(tmp_path, "seed000"), records(tmp_path, "paper")
  assert list(seed000) == list(paper) == ["class0_seed0.json"]
  a, b = seed000["class0_seed0.json"], paper["class0_seed0.json"]
  workdir = lambda r: r["eval_command"].split("--workdir=")[1].split()[0]  # noqa: E731
  assert workdir(a) == workdir(b)  # one GAN, scored twice
  assert (a["lam"], b["lam"]) == (0.7, 0.1) and (a["map_reduction"], b["map_reduction"]) == ("mean", "sum")
  log = open(os.path.join(workdir(a), "reproduce.log")).read()
  assert log.count("anogan_tf.train") == 1 and log.count("anogan_tf.evaluate") == 2
  for preset in ("seed000", "paper"):
    summary = json.loads((tmp_path / "results" / f"mnist_{preset}.json").read_text())
    assert summary["seeds"] == [0] and summary["per_class"]["0"]["auroc"] == [records(tmp_path, preset)
                                                                                ["class0_seed0.json"]["auroc"]]
    assert (tmp_path / "results" / f"mnist_{preset}.md").exists()

  # Run again: nothing is redone.
  stamps = {p: os.path.getmtime(tmp_path / "results" / "runs" / f"mnist_{p}" / "class0_seed0.json")
            for p in ("seed000", "paper")}
  out, err = reproduce_here(tmp_path, capsys, monkeypatch, "--presets=seed000,paper", "--classes=0", "--seeds=0")
  assert "seed000/paper: done before" in out and startup_notices(err) == [] and err == [], err
  assert {p: os.path.getmtime(tmp_path / "results" / "runs" / f"mnist_{p}" / "class0_seed0.json")
          for p in ("seed000", "paper")} == stamps
  assert open(os.path.join(workdir(a), "reproduce.log")).read() == log

  # A lost record is redone alone, on the same GAN (no second training).
  os.remove(tmp_path / "results" / "runs" / "mnist_paper" / "class0_seed0.json")
  out, err = reproduce_here(tmp_path, capsys, monkeypatch, "--presets=seed000,paper", "--classes=0", "--seeds=0")
  assert err[0] == "run 1 of 1: mnist class 0 seed 0, presets paper" and "  paper: evaluate" in err
  assert not any("train" in line for line in err), err
  log = open(os.path.join(workdir(a), "reproduce.log")).read()
  assert log.count("anogan_tf.train") == 1 and log.count("anogan_tf.evaluate") == 3
  assert os.path.getmtime(tmp_path / "results" / "runs" / "mnist_seed000" / "class0_seed0.json") == stamps["seed000"]
  assert records(tmp_path, "paper")["class0_seed0.json"]["auroc"] == pytest.approx(b["auroc"], abs=0.02)  # same GAN


def test_time_left_is_the_runs_left_at_the_finished_runs_mean():
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import reproduce as rp
  assert rp.time_left([600.0], 0) == "no runs left"
  assert rp.time_left([500.0, 700.0], 1) == "1 run left, about 10 min"
  assert rp.time_left([500.0, 700.0], 9) == "9 runs left, about 90 min"
  assert rp.time_left([20.0], 1) == "1 run left, about 1 min"  # never "about 0 min"
  assert rp.time_left([600.0], 29) == "29 runs left, about 4.8 h"


def test_bar_updates_are_cut_to_the_terminal_and_other_lines_pass_whole():
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import reproduce as rp
  error = "error: " + "x" * 30 + "\n"
  stream = "\rtrain:   0%|   | 0/2\rtrain:  50%|#  | 1/2 [g_loss=0.5]\rtrain: 100%|## | 2/2 [g_loss=0.4]\n" + error
  fit = rp.FitToTerminal(12)
  shown = "".join(fit(stream[i:i + 5]) for i in range(0, len(stream), 5))  # in chunks, as a pipe gives it
  assert shown == "\rtrain:   0%|\rtrain:  50%|\rtrain: 100%|\n" + error
  assert rp.FitToTerminal()(stream) == stream  # not a terminal: everything as the command wrote it


def evaluates_what_it_trained(rp, flagfile, train, evaluate):
  """The Config evaluate runs with, as reproduce.py starts it on the workdir its train command wrote
  (the flagfile again, the evaluate flags, the run's flags): an AnoganError if they ask for other
  networks than the workdir's."""
  from anogan_tf.cli import flags as anogan_flags
  from anogan_tf.config import evaluation_config
  run = ["--dataset=mnist", "--normal_classes=2", "--seed=0"]
  trained = rp.resolve_config(flagfile, [*train, *run])
  return evaluation_config(trained, anogan_flags.config_from_args([f"--flagfile={flagfile}", *evaluate, *run], trained))


def test_every_run_evaluates_the_workdir_its_training_wrote(monkeypatch):
  # Every reproduce.py run and tune.py candidate: the flags of its evaluate command ask for the
  # networks its train command trained (a GAN candidate's changes are given to both).
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  monkeypatch.chdir(ROOT)
  import reproduce as rp
  import tune
  for name, run in [*rp.RUNS.items(), *((n, tune.candidate_run(n)) for n in tune.ALL_CANDIDATES
                                        if n not in tune.ENSEMBLE_CANDIDATES)]:
    config = evaluates_what_it_trained(rp, *run)
    assert config.normal_classes == (2,), name


def test_tuning_candidates_resolve_and_the_other_gans_do_not_share_seed_000s(monkeypatch):
  """Every experiments/tune.py candidate is a valid configuration; the candidates scoring seed
  000's GAN share its workdir key, each GAN candidate trains its own (with the held-out normals
  and the encoder), scored as best.flags scores."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  monkeypatch.chdir(ROOT)
  import reproduce as rp
  import tune
  keys = {}
  for name in tune.ALL_CANDIDATES:
    if name in tune.ENSEMBLE_CANDIDATES:  # members: other candidates, each evaluated on the validation split
      members = tune.candidate_run(name)[1]
      assert len(members) > 1 and all(m in tune.ALL_CANDIDATES and m not in tune.ENSEMBLE_CANDIDATES for m in members)
      assert all("--eval_split=val" in tune.candidate_run(m)[2] for m in members)
      continue
    flagfile, train, evaluate = tune.candidate_run(name)
    config = rp.resolve_config(flagfile, ["--dataset=mnist", *train, *evaluate])
    keys[name] = rp.gan_key(config)
    if name in tune.GAN_CANDIDATES:
      assert (config.val_fraction, config.encoder_epochs) == (tune.VAL_FRACTION, rp.WARM_ENCODER_EPOCHS)
      assert (config.initial_z, config.map_steps, config.lam, config.eval_split, config.ink_power) == (
          "encoder", (0,), 0.0, "val", 0.5)
  assert len({keys[name] for name in tune.CANDIDATES}) == 1
  others = [keys[name] for name in tune.GAN_CANDIDATES]
  assert len(set(others)) == len(others) and keys["seed000"] not in others
  wide = rp.resolve_config(*tune.candidate_run("wide_best")[:1], tune.candidate_run("wide_best")[1])
  assert (wide.g_filters, wide.d_filters, wide.g_dense_channels) == ((64, 32), (64, 128), 128)


def test_commit_is_dirty_for_changed_code_or_flagfiles_not_for_results(tmp_path, monkeypatch):
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import reproduce
  git = lambda *args: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,  # noqa: E731
                                     check=True, capture_output=True)
  files = ["anogan_tf/mapper.py", "experiments/mnist.flags", "experiments/results/mnist_seed000.md"]
  for name in files:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("v1\n")
  git("init", "-q")
  git("add", "-A")
  git("commit", "-qm", "c")
  monkeypatch.setattr(reproduce, "ROOT", str(tmp_path))
  head = reproduce.commit()
  assert len(head) == 12 and not head.endswith("+dirty")
  (tmp_path / files[2]).write_text("a table rewritten by a run\n")
  assert reproduce.commit() == head
  for name in files[:2]:
    (tmp_path / name).write_text("changed\n")
    assert reproduce.commit() == head + "+dirty", name
    git("checkout", "-q", "--", name)


def test_each_presets_bf16_variant_scores_the_same_gan_in_bfloat16(monkeypatch):
  """`<preset>_bf16` trains nothing of its own: same GAN key as its preset; it evaluates in bfloat16."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  monkeypatch.chdir(ROOT)
  import reproduce as rp
  for name in rp.PRESETS:
    flagfile, train, evaluate = rp.RUNS[f"{name}_bf16"]
    assert flagfile == rp.RUNS[name][0] and train == rp.RUNS[name][1]
    base = rp.resolve_config(flagfile, ["--dataset=mnist", *train])
    scored = rp.resolve_config(flagfile, ["--dataset=mnist", *train, *evaluate])
    assert (base.precision, scored.precision) == ("float32", "bfloat16")


def test_each_presets_bf16_trained_variant_trains_its_own_gan_in_bfloat16(monkeypatch):
  """`<preset>_bf16_trained` trains and evaluates in bfloat16: a GAN of its own (another key than
  its preset's), scored in bfloat16."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  monkeypatch.chdir(ROOT)
  import reproduce as rp
  for name in rp.PRESETS:
    flagfile, train, evaluate = rp.RUNS[f"{name}_bf16_trained"]
    assert flagfile == rp.RUNS[name][0]
    trained = rp.resolve_config(flagfile, ["--dataset=mnist", *train])
    scored = rp.resolve_config(flagfile, ["--dataset=mnist", *train, *evaluate])
    assert (trained.precision, scored.precision) == ("bfloat16", "bfloat16")
    assert rp.gan_key(trained) != rp.gan_key(rp.resolve_config(flagfile, ["--dataset=mnist"]))
