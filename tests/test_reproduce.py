"""experiments/reproduce.py: presets that differ only in mapping share one GAN, a finished run is
not redone, and a lost record is redone alone. Tiny settings: what is tested is the bookkeeping."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

TINY = "--epochs=1 --train_examples=64 --test_examples=64 --map_steps=2,2 --batch_size=32"


def reproduce(tmp_path, *args):
  command = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--dataset=mnist",
             f"--runs_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'results'}", f"--extra={TINY}", *args]
  done = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout


def records(tmp_path, preset):
  folder = tmp_path / "results" / "runs" / f"mnist_{preset}"
  return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_presets_share_a_gan_resume_per_run_and_redo_only_what_is_missing(tmp_path, mnist_dir):
  out = reproduce(tmp_path, "--presets=seed000,paper", "--classes=0", "--seeds=0")
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
  out = reproduce(tmp_path, "--presets=seed000,paper", "--classes=0", "--seeds=0")
  assert "seed000/paper: done before" in out
  assert {p: os.path.getmtime(tmp_path / "results" / "runs" / f"mnist_{p}" / "class0_seed0.json")
          for p in ("seed000", "paper")} == stamps
  assert open(os.path.join(workdir(a), "reproduce.log")).read() == log

  # A lost record is redone alone, on the same GAN (no second training).
  os.remove(tmp_path / "results" / "runs" / "mnist_paper" / "class0_seed0.json")
  reproduce(tmp_path, "--presets=seed000,paper", "--classes=0", "--seeds=0")
  log = open(os.path.join(workdir(a), "reproduce.log")).read()
  assert log.count("anogan_tf.train") == 1 and log.count("anogan_tf.evaluate") == 3
  assert os.path.getmtime(tmp_path / "results" / "runs" / "mnist_seed000" / "class0_seed0.json") == stamps["seed000"]
  assert records(tmp_path, "paper")["class0_seed0.json"]["auroc"] == pytest.approx(b["auroc"], abs=0.02)  # same GAN


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
