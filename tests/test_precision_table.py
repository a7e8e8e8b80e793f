"""experiments/precision.py: issue 25's float32-against-bfloat16 AUROC table, from per-run records
written here as experiments/reproduce.py writes them (no training). The expected numbers are
computed from the AUROCs the test writes, not by the code under test."""

import json
import os
import sys

import numpy as np
import pytest
from conftest import ROOT

# AUROC x100 of the float32 preset per (class, seed): seeds 0 and 1 cover the ten classes, seed 2
# classes 0-4 only (a series still running: not a complete seed).
FP32 = {
    0: [98.0, 99.0, 88.0, 90.0, 93.0, 89.0, 95.0, 94.0, 85.0, 92.0],
    1: [97.0, 99.5, 86.0, 85.0, 91.0, 87.0, 94.0, 93.0, 83.0, 90.0],
    2: [96.0, 98.5, 87.0, 80.0, 92.0],
}
# bfloat16 - float32 in AUROC points per class, one per seed the class has. Class 3 is off by exactly
# 1 point on each seed (on the goal's boundary: within), class 4 by 1.01 over its seeds (just outside),
# class 7 by -0.99 (within), class 8 by -1.2 and class 9 by +2.1 (outside).
OFFSET = {0: [0.1, -0.3, 0.2], 1: [0.0, 0.0, 0.0], 2: [0.5, 0.3, 0.4], 3: [1.0, 1.0, 1.0], 4: [1.0, 1.0, 1.03],
          5: [-0.2, -0.4], 6: [0.3, 0.1], 7: [-0.99, -0.99], 8: [-1.5, -0.9], 9: [2.0, 2.2]}
WITHIN = {0: True, 1: True, 2: True, 3: True, 4: False, 5: True, 6: True, 7: True, 8: False, 9: False}
# A GAN trained in bfloat16 (<preset>_bf16_trained): seed 0 on the ten classes, seed 1 on classes 0-2.
TRAINED = {0: [0.5, -2.0, 1.5, 3.0, -1.0, 0.0, 2.5, -0.5, 1.0, 4.0], 1: [-1.0, 0.5, 2.0]}

HEADING = {"bf16": "# mnist: AUROC scored in float32 and in bfloat16, the same GANs",
           "bf16_trained": "# mnist: AUROC of GANs trained and scored in float32 and in bfloat16"}


@pytest.fixture
def precision():
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import precision
  return precision


def _write(results_dir, preset, c, seed, auroc, dataset="mnist"):
  """One record at the path experiments/reproduce.py gives it, with the fields report.summarize reads."""
  bf16 = "bf16" in preset
  record = {"dataset": dataset, "preset": preset, "class": c, "seed": seed, "auroc": auroc,
            "auprc": 0.99, "auprc_normal": 0.9, "seconds": 1.0, "images_per_second": 250.0 if bf16 else 100.0,
            "compute_precision": "bfloat16" if bf16 else "float32", "train_seconds": 60.0, "train_wall_seconds": 61.0,
            "train_commit": "aaaaaaaaaaaa", "train_command": f"python -m anogan_tf.train --normal_classes={c} --seed={seed}",
            "eval_wall_seconds": 2.0, "eval_commit": "bbbbbbbbbbbb" if bf16 else "aaaaaaaaaaaa",
            "eval_command": f"python -m anogan_tf.evaluate --eval_dir=w/class{c}_seed{seed}/eval_{preset}",
            "finished": "2026-12-06 08:21 UTC"}
  folder = results_dir / "runs" / f"{dataset}_{preset}"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / f"class{c}_seed{seed}.json").write_text(json.dumps(record, indent=2))


def _aurocs(points: dict) -> dict:
  """{(class, seed): AUROC} from {seed: [AUROC x100 per class]}."""
  return {(c, s): round(v / 100, 6) for s, row in points.items() for c, v in enumerate(row)}


def _offset(fp32: dict, offsets: dict) -> dict:
  """fp32's AUROCs moved by offsets: {class: [AUROC points per seed]}."""
  return {(c, s): round(fp32[(c, s)] + offsets[c][s] / 100, 6) for c, s in fp32}


@pytest.fixture
def results(tmp_path):
  """tmp/precision/runs/: seed000 and seed000_bf16 on FP32's (class, seed) pairs and a few of one only,
  seed000_bf16_trained, and best with a best_bf16 of class 0 seed 0; returns (results_dir, fp32, bf16, trained)."""
  results_dir = tmp_path / "precision"
  fp32 = _aurocs(FP32)
  bf16 = _offset(fp32, OFFSET)
  for (c, s), v in fp32.items():
    _write(results_dir, "seed000", c, s, v)
  for (c, s), v in bf16.items():
    _write(results_dir, "seed000_bf16", c, s, v)
  # Pairs with one scoring only are left out: float32 of class 5 seed 2; bfloat16 of a whole seed 3.
  _write(results_dir, "seed000", 5, 2, 0.5)
  for c in range(10):
    _write(results_dir, "seed000_bf16", c, 3, 0.5)
  trained = {(c, s): round(fp32[(c, s)] + d / 100, 6) for s, row in TRAINED.items() for c, d in enumerate(row)}
  for (c, s), v in trained.items():
    _write(results_dir, "seed000_bf16_trained", c, s, v)
  _write(results_dir, "best", 0, 0, 0.97)
  _write(results_dir, "best_bf16", 0, 0, 0.96)
  return results_dir, fp32, bf16, trained


def _expected(fp32: dict, bf16: dict) -> dict:
  """What the table should hold, computed here with numpy from the AUROCs written."""
  classes = sorted({c for c, _ in fp32})
  seeds = sorted({s for _, s in fp32})
  complete = [s for s in seeds if all((c, s) in fp32 for c in classes)]
  per_class = {}
  for c in classes:
    keys = sorted(k for k in fp32 if k[0] == c)
    a, b = 100 * np.array([fp32[k] for k in keys]), 100 * np.array([bf16[k] for k in keys])
    per_class[c] = {"seeds": [s for _, s in keys], "float32": a, "bfloat16": b, "difference": np.mean(b - a)}
  means = {name: [np.mean([100 * values[(c, s)] for c in classes]) for s in complete]
           for name, values in (("float32", fp32), ("bfloat16", bf16))}
  return {"classes": classes, "seeds": seeds, "complete": complete, "per_class": per_class, "means": means,
          "gap": np.mean(means["bfloat16"]) - np.mean(means["float32"]),
          "spread": np.std(means["float32"], ddof=1) if len(complete) > 1 else None}


def test_per_class_differences_ten_class_means_and_the_goals(results, precision):
  results_dir, fp32, bf16, _ = results
  want = _expected(fp32, bf16)
  # The boundary cases are where the test means them to be: 100 * 0.91 - 100 * 0.90 is exactly 1.0
  # (IEEE multiplication and subtraction round correctly), class 4 just above it.
  assert want["per_class"][3]["difference"] == 1.0 and 1.005 < want["per_class"][4]["difference"] < 1.015

  comp = precision.compare(str(results_dir), "mnist", "seed000")
  assert comp["preset"] == "seed000" and comp["against"] == "seed000_bf16"
  assert comp["classes"] == list(range(10)) and comp["seeds"] == [0, 1, 2]  # not bfloat16's lone seed 3
  assert comp["complete_seeds"] == [0, 1]
  assert set(comp["per_class"]) == {str(c) for c in range(10)}
  for c, entry in want["per_class"].items():
    got = comp["per_class"][str(c)]
    assert got["seeds"] == entry["seeds"], c
    assert got["float32"] == pytest.approx(entry["float32"]) and got["bfloat16"] == pytest.approx(entry["bfloat16"])
    assert got["difference"] == pytest.approx(entry["difference"], abs=1e-9), c
    assert got["within"] is WITHIN[c], (c, got["difference"])
  assert comp["per_class"]["5"]["seeds"] == [0, 1]  # its float32 record of seed 2 has no bfloat16 one
  assert comp["per_class"]["2"]["difference"] == pytest.approx(0.4)  # bfloat16 - float32, not the other way
  assert comp["per_class"]["8"]["difference"] == pytest.approx(-1.2)

  assert comp["mean_per_seed"]["float32"] == pytest.approx(want["means"]["float32"])
  assert comp["mean_per_seed"]["bfloat16"] == pytest.approx(want["means"]["bfloat16"])
  assert comp["mean"] == pytest.approx({name: np.mean(v) for name, v in want["means"].items()})
  assert comp["mean_difference"] == pytest.approx(want["gap"]) and comp["mean_difference"] == pytest.approx(0.211)
  assert comp["float32_spread"] == pytest.approx(want["spread"])
  assert comp["float32_spread"] == pytest.approx(np.std([92.3, 90.55], ddof=1))
  assert comp["mean_within"] is True  # 0.21 points apart, float32's seeds 1.24 apart
  assert comp["every_class_within"] is False  # classes 4, 8 and 9
  assert comp["images_per_second"] == pytest.approx({"float32": 100.0, "bfloat16": 250.0})
  assert comp["eval_commands"] == ["python -m anogan_tf.evaluate --eval_dir=w/class0_seed0/eval_seed000_bf16"]


@pytest.mark.parametrize("seeds, gap, step, within", [
    (2, -0.4, 0.01, True),  # 0.4 points apart, float32's ten-class means 0.71 apart over its seeds
    (2, 0.4, 0.002, False),  # within half a point, beyond the seed spread (0.14)
    (2, 0.6, 0.02, False),  # within the seed spread (1.41), beyond half a point
    (1, 0.3, 0.0, True),  # one seed: no spread, half a point decides
    (1, 0.6, 0.0, False),
])
def test_the_mean_is_within_half_a_point_and_within_float32s_spread(tmp_path, precision, seeds, gap, step, within):
  fp32 = {(c, s): round(0.80 + 0.01 * c + step * s, 6) for c in range(10) for s in range(seeds)}
  bf16 = {k: round(v + gap / 100, 6) for k, v in fp32.items()}
  for preset, values in (("seed000", fp32), ("seed000_bf16", bf16)):
    for (c, s), v in values.items():
      _write(tmp_path, preset, c, s, v)
  want = _expected(fp32, bf16)
  comp = precision.compare(str(tmp_path), "mnist", "seed000")
  assert comp["mean_difference"] == pytest.approx(want["gap"]) and comp["mean_difference"] == pytest.approx(gap)
  if seeds == 1:
    assert want["spread"] is None and comp["float32_spread"] is None
  else:
    assert comp["float32_spread"] == pytest.approx(want["spread"])
    assert comp["float32_spread"] == pytest.approx(100 * step / np.sqrt(2))
  assert comp["mean_within"] is within
  assert comp["every_class_within"] is True  # every class off by the same |gap| < 1


def test_against_bf16_trained_pairs_the_trained_preset_and_writes_its_own_table(results, precision, capsys):
  results_dir, fp32, _, trained = results
  pairs = {k: v for k, v in fp32.items() if k in trained}
  want = _expected(pairs, trained)
  comp = precision.compare(str(results_dir), "mnist", "seed000", against="bf16_trained")
  assert comp["against"] == "seed000_bf16_trained"
  assert comp["classes"] == list(range(10)) and comp["seeds"] == [0, 1] and comp["complete_seeds"] == [0]
  for c, entry in want["per_class"].items():
    got = comp["per_class"][str(c)]
    assert got["seeds"] == entry["seeds"] and got["bfloat16"] == pytest.approx(entry["bfloat16"])
    assert got["difference"] == pytest.approx(entry["difference"], abs=1e-9)
  assert comp["per_class"]["0"]["difference"] == pytest.approx(np.mean([0.5, -1.0]))  # not the _bf16 records'
  assert comp["mean_difference"] == pytest.approx(np.mean(TRAINED[0]))
  assert comp["float32_spread"] is None and comp["mean_within"] is False  # +0.9 points, one complete seed

  # main with the default --out and --presets (best has no best_bf16_trained: left out)
  capsys.readouterr()
  written, md = written_table(precision, capsys, results_dir, "bf16_trained", "precision_mnist_trained",
                              absent="precision_mnist", made="SEEDS=0,1 PRESETS=seed000,seed000_bf16_trained")
  assert [c["against"] for c in written["comparisons"]] == ["seed000_bf16_trained"]
  assert written["comparisons"][0]["mean_difference"] == pytest.approx(np.mean(TRAINED[0]))
  assert "## preset `seed000`, seeds 0, 1" in md and "## preset `best`" not in md


def written_table(precision, capsys, results_dir, against, name, absent, made):
  """(the .json, the .md) that main with --against wrote as `name` beside the results folder (and
  printed the .md's path), not writing the other choice's `absent` table: with its heading and the
  command that reproduces it (`made`: its make arguments after CLASSES)."""
  args = [] if against == "bf16" else [f"--against={against}"]
  assert precision.main([f"--results_dir={results_dir}", *args]) == 0
  base = results_dir.parent / name
  assert capsys.readouterr().out == f"{base}.md\n"
  assert not (results_dir.parent / f"{absent}.json").exists()
  written, md = json.loads(base.with_suffix(".json").read_text()), base.with_suffix(".md").read_text()
  command = (f"make reproduce-mnist CLASSES=0,1,2,3,4,5,6,7,8,9 {made} RESULTS={results_dir}; python "
             f"experiments/precision.py --results_dir={results_dir} --dataset=mnist --presets=seed000,best"
             + "".join(f" {a}" for a in args))
  assert written["command"] == command
  assert md.splitlines()[0] == HEADING[against]
  assert f"Produce the records (resumes), then this table: `{command}`" in md
  return written, md


def test_against_bf16_writes_the_same_gans_table(results, precision, capsys):
  results_dir, *_ = results
  written, _ = written_table(precision, capsys, results_dir, "bf16", "precision_mnist", absent="precision_mnist_trained",
                             made="SEEDS=0,1,2 PRESETS=seed000,seed000_bf16,best,best_bf16")
  assert [c["against"] for c in written["comparisons"]] == ["seed000_bf16", "best_bf16"]


@pytest.mark.parametrize("against", ["bf16", "bf16_trained"])
def test_no_pairs_returns_1_says_what_to_run_and_writes_nothing(tmp_path, precision, capsys, against):
  results_dir = tmp_path / "precision"
  _write(results_dir, "seed000", 0, 0, 0.9)  # float32 only: no pair
  _write(results_dir, "best_bf16" if against == "bf16" else "best_bf16_trained", 0, 0, 0.9)  # the other only
  before = sorted(str(p) for p in tmp_path.rglob("*"))
  capsys.readouterr()
  assert precision.main([f"--results_dir={results_dir}", f"--against={against}"]) == 1
  out, err = capsys.readouterr()
  assert out == "" and err.endswith("\n") and err.count("\n") == 1, err
  assert "make reproduce-mnist" in err and f"seed000_{against}" in err, err
  assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no table, no .tmp
  assert precision.main([f"--results_dir={tmp_path / 'empty'}", f"--out={tmp_path / 'p'}"]) == 1
  assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("dataset, presets, against, make", [
    ("mnist", "seed000,best", "bf16", "make reproduce-mnist PRESETS=seed000,seed000_bf16,best,best_bf16"),
    ("fashion_mnist", "best", "bf16_trained", "make reproduce-fashion PRESETS=best,best_bf16_trained"),
])
def test_no_pairs_message_names_the_make_command_that_writes_them(tmp_path, precision, capsys, dataset, presets,
                                                                  against, make):
  # What it says to run makes the records it reads: the dataset's target, the presets asked for and
  # their pairs, written into --results_dir (make's RESULTS is elsewhere by default).
  results_dir = tmp_path / "precision"
  capsys.readouterr()
  assert precision.main([f"--results_dir={results_dir}", f"--dataset={dataset}", f"--presets={presets}",
                         f"--against={against}"]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and f"{make} RESULTS={results_dir}" in err, err
