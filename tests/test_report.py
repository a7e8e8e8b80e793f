"""experiments/report.py: the tables' numbers from per-run records (synthetic records, no training)."""

import json
import os
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "experiments"))
import report  # noqa: E402


def _record(preset, c, seed, auroc):
  return {"dataset": "mnist", "preset": preset, "class": c, "seed": seed, "auroc": auroc, "auprc": 0.9,
          "auprc_normal": 0.5, "train_seconds": 10.0, "seconds": 2.0, "images_per_second": 5.0,
          "train_command": "train", "eval_command": "evaluate", "train_commit": "abc", "eval_commit": "abc"}


def _write(results_dir, records):
  for r in records:
    folder = results_dir / "runs" / f"mnist_{r['preset']}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"class{r['class']}_seed{r['seed']}.json").write_text(json.dumps(r))


@pytest.fixture
def results(tmp_path):
  # preset a: classes 0 and 1, seeds 0 and 1 (both complete); seed 2 covers class 0 only.
  aurocs = {(0, 0): 0.90, (0, 1): 0.80, (1, 0): 0.70, (1, 1): 0.50, (0, 2): 0.60}
  _write(tmp_path, [_record("a", c, s, v) for (c, s), v in aurocs.items()])
  # preset b: class 0 only, one seed.
  _write(tmp_path, [_record("b", 0, 0, 0.99)])
  return tmp_path


def test_summary_means_stds_and_the_spread_of_complete_seeds_only(results):
  summary = report.summarize(report.load_records(str(results), "mnist", "a"))
  assert summary["classes"] == [0, 1] and summary["seeds"] == [0, 1, 2] and summary["n_runs"] == 5
  class0 = summary["per_class"]["0"]
  assert class0["seeds"] == [0, 1, 2] and class0["auroc"] == [0.90, 0.80, 0.60]
  assert class0["auroc_mean"] == pytest.approx(np.mean([0.90, 0.80, 0.60]))
  assert class0["auroc_std"] == pytest.approx(np.std([0.90, 0.80, 0.60], ddof=1))
  # Seed 2 lacks class 1, so only seeds 0 and 1 give a mean over the classes.
  assert summary["mean_auroc_per_seed"] == pytest.approx({"0": 0.80, "1": 0.65})
  assert summary["mean_auroc_std_over_seeds"] == pytest.approx(np.std([0.80, 0.65], ddof=1))
  assert summary["mean_auroc"] == pytest.approx(np.mean([np.mean([0.9, 0.8, 0.6]), 0.6]))


def test_combined_table_keeps_the_shared_classes_and_gives_the_spread_where_it_applies(results):
  table = report.combined_table(str(results), "mnist", ["a", "b"])
  lines = table.splitlines()
  assert lines[0] == "| AUROC (%) | 0 | mean |"  # class 1 is not in b
  row_a = next(line for line in lines if line.startswith("| **ours, a**"))
  # a's class-0 cell; its mean is over class 0 only, so no spread of the two-class mean beside it
  assert row_a == "| **ours, a** (seeds 0,1,2) | 76.7 ± 15.3 | **76.7** |"
  assert "| **ours, b** (seeds 0) | 99.0 | **99.0** |" in lines
  published = next(line for line in lines if line.startswith("| OCGAN"))
  assert published == "| OCGAN (Perera et al. 2019) | 99.8 | 99.8 |"
  # On all of a's classes the mean carries the spread over its complete seeds.
  alone = report.combined_table(str(results), "mnist", ["a"]).splitlines()
  spread = 100 * np.std([0.80, 0.65], ddof=1)
  assert alone[2].endswith(f"| **{100 * np.mean([np.mean([0.9, 0.8, 0.6]), 0.6]):.1f} ± {spread:.1f}** |")
