"""Adds `auroc_by_anomalous_class` to run records written before evaluate gave it, from each
run's own scores.csv (the record's eval command names its --eval_dir), then rebuilds the tables.

  python experiments/by_class.py --results_dir=experiments/results --records=mnist_seed000,mnist_paper

A record is changed only when the AUROC recomputed from its scores.csv equals the one it holds
(the scores are those it was made from); records already holding the field are left alone.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import shlex
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import report  # noqa: E402  (experiments/report.py)
import reproduce  # noqa: E402  (experiments/reproduce.py)

from anogan_tf.evaluation.metrics import auroc_by_class  # noqa: E402

KEY = "auroc_by_anomalous_class"
# scores.csv keeps 8 significant digits: ties that float32 scores did not have can move the AUROC
# in its last places.
AUROC_TOLERANCE = 1e-4


def eval_dir_of(record: dict, base_dir: str) -> str:
  for arg in shlex.split(record["eval_command"]):
    if arg.startswith("--eval_dir="):
      return os.path.join(base_dir, arg.split("=", 1)[1])
  raise ValueError("its eval command names no --eval_dir")


def by_class_from_scores(path: str, expected_auroc: float) -> dict:
  from sklearn.metrics import roc_auc_score
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  labels = np.array([int(r["label"]) for r in rows])
  classes = np.array([r["class"] for r in rows])
  score = np.array([float(r["score"]) for r in rows])
  auroc = roc_auc_score(labels, score)
  if abs(auroc - expected_auroc) > AUROC_TOLERANCE:
    raise ValueError(f"its scores give AUROC {auroc:.6f}, the record {expected_auroc:.6f}: not the scores it was made from")
  return auroc_by_class(labels, classes, score)


def backfill(results_dir: str, name: str, base_dir: str) -> tuple:
  """(records changed, [(record, why it was left)]) for runs/<name>/."""
  changed, left = 0, []
  for path in sorted(glob.glob(os.path.join(results_dir, "runs", name, "class*_seed*.json"))):
    with open(path) as f:
      record = json.load(f)
    if KEY in record:
      continue
    try:
      scores = os.path.join(eval_dir_of(record, base_dir), "scores.csv")
      if not os.path.exists(scores):
        raise ValueError(f"{scores} does not exist")
      record[KEY] = by_class_from_scores(scores, record["auroc"])
    except ValueError as e:
      left.append((path, str(e)))
      continue
    report.write_json(path, record)
    changed += 1
  return changed, left


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results_dir", default="experiments/results")
  parser.add_argument("--records", required=True, help="comma-separated <dataset>_<preset> folders under runs/")
  parser.add_argument("--base_dir", default=ROOT, help="what a relative --eval_dir in a record is relative to")
  args = parser.parse_args(argv)
  for name in [n for n in args.records.split(",") if n]:
    dataset = next((d for d in reproduce.CLASSES if name.startswith(d + "_")), None)
    if dataset is None or not os.path.isdir(os.path.join(args.results_dir, "runs", name)):
      parser.error(f"no records in {os.path.join(args.results_dir, 'runs', name)}; name them <dataset>_<preset>")
    changed, left = backfill(args.results_dir, name, args.base_dir)
    print(f"{name}: {changed} records given {KEY}")
    for path, why in left:
      print(f"  left {path}: {why}")
    report.write_tables(args.results_dir, dataset, name[len(dataset) + 1:])
  return 0


if __name__ == "__main__":
  sys.exit(main())
