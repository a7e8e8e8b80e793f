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
  assert alone[2].startswith("| **ours, a** (seeds 0,1; seed 2 on class 0) |")  # seed 2 lacks class 1
  spread = 100 * np.std([0.80, 0.65], ddof=1)
  assert alone[2].endswith(f"| **{100 * np.mean([np.mean([0.9, 0.8, 0.6]), 0.6]):.1f} ± {spread:.1f}** |")


def test_by_class_table_averages_the_seeds_that_hold_it_and_names_the_lowest(tmp_path):
  records = [_record("a", 0, 0, 0.8), _record("a", 0, 1, 0.8), _record("a", 0, 2, 0.8), _record("a", 1, 0, 0.9)]
  records[0]["auroc_by_anomalous_class"] = {"1": 0.2, "2": 0.9, "10": 1.0}
  records[1]["auroc_by_anomalous_class"] = {"1": 0.4, "2": 0.7}  # no 10s in seed 1's test set; seed 2's record has none
  _write(tmp_path, records)
  summary = report.summarize(report.load_records(str(tmp_path), "mnist", "a"))
  class0 = summary["per_class"]["0"]
  assert class0["by_anomalous_class_seeds"] == [0, 1]
  assert class0["auroc_by_anomalous_class"] == pytest.approx({"1": 0.3, "2": 0.8, "10": 1.0})
  assert list(class0["auroc_by_anomalous_class"]) == ["1", "2", "10"]  # numeric order, not text
  assert "auroc_by_anomalous_class" not in summary["per_class"]["1"]
  lines = report.by_class_table(summary)
  assert "| normal \\ anomaly | seeds | 1 | 2 | 10 | lowest |" in lines
  assert "| 0 | 0, 1 | 30.0 | 80.0 | 100.0 | 1 (30.0) |" in lines
  assert not any(line.startswith("| 1 |") for line in lines)  # class 1 has no per-class AUROCs
  assert report.by_class_table(report.summarize([_record("a", 0, 0, 0.8)])) == []


def test_by_class_backfill_reads_each_records_scores_and_leaves_mismatches(tmp_path):
  import by_class
  from sklearn.metrics import roc_auc_score
  rng = np.random.default_rng(0)
  classes = np.repeat([0, 1, 2], 20)
  labels = (classes != 0).astype(int)
  score = rng.normal(size=60) + np.where(classes == 2, 2.0, 0.0)  # class 2 easy, class 1 chance
  records = []
  for seed, shift in ((0, 0.0), (1, 5.0)):
    eval_dir = tmp_path / f"eval{seed}"
    eval_dir.mkdir()
    rows = ["index,label,class,score"] + [f"{i},{l},{c},{s:.8g}" for i, (l, c, s) in enumerate(zip(labels, classes, score))]
    (eval_dir / "scores.csv").write_text("\n".join(rows) + "\n")
    record = _record("a", 0, seed, roc_auc_score(labels, score) + shift / 100)  # seed 1's record is not of these scores
    record["eval_command"] = f"python -m anogan_tf.evaluate --workdir=w --eval_dir={eval_dir}"
    records.append(record)
  _write(tmp_path, records)
  changed, left = by_class.backfill(str(tmp_path), "mnist_a", base_dir="/")
  assert changed == 1 and [os.path.basename(p) for p, _ in left] == ["class0_seed1.json"]
  saved = json.loads((tmp_path / "runs" / "mnist_a" / "class0_seed0.json").read_text())
  for c in (1, 2):
    pick = classes != 3 - c
    assert saved["auroc_by_anomalous_class"][str(c)] == pytest.approx(roc_auc_score(labels[pick], score[pick]), abs=1e-6)
  assert "auroc_by_anomalous_class" not in json.loads((tmp_path / "runs" / "mnist_a" / "class0_seed1.json").read_text())
  assert by_class.backfill(str(tmp_path), "mnist_a", base_dir="/") == (0, left)  # done ones are not redone


def test_precision_compares_each_runs_two_scorings_and_checks_the_goals(tmp_path):
  """experiments/precision.py: per class the paired difference of bfloat16 and float32 AUROC; the
  ten-class means within 0.5 points and float32's seed spread; each class within 1 point."""
  import precision
  fp32 = {(0, 0): 0.90, (1, 0): 0.80, (0, 1): 0.92, (1, 1): 0.84}
  close = {k: v + 0.004 for k, v in fp32.items()}
  _write(tmp_path, [_record("seed000", c, s, v) for (c, s), v in fp32.items()]
         + [_record("seed000_bf16", c, s, v) for (c, s), v in close.items()])
  comp = precision.compare(str(tmp_path), "mnist", "seed000")
  assert comp["classes"] == [0, 1] and comp["complete_seeds"] == [0, 1]
  assert comp["per_class"]["1"]["float32"] == pytest.approx([80.0, 84.0])
  assert comp["per_class"]["0"]["difference"] == pytest.approx(0.4)
  assert comp["mean_difference"] == pytest.approx(0.4)
  assert comp["float32_spread"] == pytest.approx(np.std([85.0, 88.0], ddof=1))
  assert comp["mean_within"] is True and comp["every_class_within"] is True
  # class 1 off by 1.9 points on seed 1 (1.15 over the seeds): not within 1; the means 0.78 apart: not within
  _write(tmp_path, [_record("seed000_bf16", 1, 1, 0.84 + 0.019)])
  comp = precision.compare(str(tmp_path), "mnist", "seed000")
  assert comp["per_class"]["1"]["difference"] == pytest.approx(1.15) and comp["every_class_within"] is False
  assert comp["mean_within"] is False
  assert precision.main([f"--results_dir={tmp_path}", f"--out={tmp_path / 'p'}", "--presets=seed000"]) == 0
  assert "| difference | +0.40 | +1.15 | +0.78 |" in (tmp_path / "p.md").read_text()
  assert precision.main([f"--results_dir={tmp_path}", "--presets=best"]) == 1  # no pairs: says so


def test_records_and_tables_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
  # The experiments' one writer (report.write_json, write_json_and_md, on anogan_tf's write_text): a record that
  # cannot be written, or a write cut off by an error, leaves the file as it was.
  path = str(tmp_path / "record.json")
  report.write_json(path, {"auroc": 0.5})
  assert json.loads(open(path).read()) == {"auroc": 0.5} and open(path).read().endswith("}\n")
  with pytest.raises(TypeError):
    report.write_json(path, {"auroc": object()})
  real_replace = os.replace

  def failing_replace(src, dst):
    raise OSError("disk full")
  monkeypatch.setattr(os, "replace", failing_replace)
  with pytest.raises(OSError):
    report.write_json_and_md(str(tmp_path / "record"), {"auroc": 0.9}, "| table |\n")
  monkeypatch.setattr(os, "replace", real_replace)
  assert json.loads(open(path).read()) == {"auroc": 0.5}
  assert not os.path.exists(str(tmp_path / "record.md"))
  report.write_json_and_md(str(tmp_path / "record"), {"auroc": 0.9}, "| table |\n")
  assert json.loads(open(path).read()) == {"auroc": 0.9} and open(str(tmp_path / "record.md")).read() == "| table |\n"


def test_a_tables_hand_written_notes_survive_its_regeneration(tmp_path):
  # Notes on a table are kept in <table>.notes.md; every regeneration of the table from its records ends with them.
  _write(tmp_path, [_record("seed000", 0, 0, 0.8), _record("seed000", 0, 1, 0.9)])
  (tmp_path / "mnist_seed000.notes.md").write_text("Notes (by hand): seed 1 ran on another machine.\n")
  report.write_tables(str(tmp_path), "mnist", "seed000")
  _write(tmp_path, [_record("seed000", 0, 2, 0.7)])
  report.write_tables(str(tmp_path), "mnist", "seed000")
  table = (tmp_path / "mnist_seed000.md").read_text()
  assert "0, 1, 2" in table and table.endswith("\n\nNotes (by hand): seed 1 ran on another machine.\n")
