"""experiments/ensemble.py: members' scores, each in units of its spread on held-out normals, averaged."""

import csv
import os
import sys

import numpy as np
import pytest
from conftest import ROOT
from sklearn.metrics import roc_auc_score

from anogan_tf.errors import AnoganError

sys.path.insert(0, os.path.join(ROOT, "experiments"))

import ensemble  # noqa: E402


def write_eval(folder, labels, classes, scores, index=None):
  """An evaluate-like eval dir: scores.csv with index, label, class, score."""
  os.makedirs(folder, exist_ok=True)
  index = range(len(scores)) if index is None else index
  with open(os.path.join(folder, "scores.csv"), "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["index", "label", "class", "score", "residual"])
    for i, label, c, s in zip(index, labels, classes, scores):
      out.writerow([i, label, c, repr(float(s)), 0.0])
  return str(folder)


def two_members(tmp_path, n=400, seed=0):
  """Member A on a scale of 1000 sees anomalies of kind "a" only, member B on a scale of 0.01 kind "b"
  only: each is at chance on the other kind. Their held-out normals are drawn apart from the test images."""
  rng = np.random.default_rng(seed)
  labels = np.repeat([0, 1, 1], n)
  classes = np.repeat(["0", "a", "b"], n)
  a = rng.normal(size=3 * n) + 2.0 * (classes == "a")
  b = rng.normal(size=3 * n) + 2.0 * (classes == "b")
  held_a, held_b = rng.normal(size=n), rng.normal(size=n)
  held_labels, held_classes = np.zeros(n, int), np.array(["0"] * n)
  dirs = {"a": write_eval(tmp_path / "a", labels, classes, 1000 * a + 5000),
          "a_val": write_eval(tmp_path / "a_val", held_labels, held_classes, 1000 * held_a + 5000),
          "b": write_eval(tmp_path / "b", labels, classes, 0.01 * b - 3),
          "b_val": write_eval(tmp_path / "b_val", held_labels, held_classes, 0.01 * held_b - 3)}
  return labels, classes, a, b, held_a, held_b, dirs


def test_each_member_is_scaled_by_its_held_out_normals_and_the_mean_is_the_score(tmp_path):
  labels, classes, a, b, held_a, held_b, d = two_members(tmp_path)
  combined = ensemble.combine([d["a"], d["b"]], [d["a_val"], d["b_val"]])
  z_a = (1000 * a + 5000 - np.mean(1000 * held_a + 5000)) / np.std(1000 * held_a + 5000)
  z_b = (0.01 * b - 3 - np.mean(0.01 * held_b - 3)) / np.std(0.01 * held_b - 3)
  np.testing.assert_allclose(combined["score"], (z_a + z_b) / 2, rtol=1e-9, atol=1e-9)
  np.testing.assert_array_equal(combined["label"], labels)
  np.testing.assert_array_equal(combined["class"], classes)


def test_the_normalised_mean_finds_what_either_member_finds_and_the_raw_sum_would_not(tmp_path):
  labels, classes, a, b, *_, d = two_members(tmp_path)
  m = ensemble.metrics(ensemble.combine([d["a"], d["b"]], [d["a_val"], d["b_val"]]))
  alone = {name: roc_auc_score(labels, score) for name, score in (("a", a), ("b", b))}
  raw_sum = roc_auc_score(labels, 1000 * a + 0.01 * b)  # A's scale would drown B
  assert m["auroc"] > max(alone.values()) + 0.03 and m["auroc"] > raw_sum + 0.03
  by_class = m["auroc_by_anomalous_class"]
  assert set(by_class) == {"a", "b"} and min(by_class.values()) > 0.8  # both kinds found
  assert (m["n_normal"], m["n_anomalous"]) == (400, 800)


def test_one_member_ranks_as_it_does_alone_and_the_record_sums_the_members_times(tmp_path):
  labels, _, a, *_, d = two_members(tmp_path)
  record = ensemble.record([{"name": "a", "eval_dir": d["a"], "held_out_dir": d["a_val"],
                             "record": {"seconds": 2.0, "train_seconds": 10.0, "encoder_seconds": 5.0, "auroc": 0.7}}])
  assert record["auroc"] == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
  assert record["members"] == ["a"] and record["train_seconds"] == 15.0
  assert record["images_per_second"] == pytest.approx(len(labels) / 2.0)


def test_members_that_scored_other_images_or_lack_held_out_normals_are_one_line_errors(tmp_path):
  _, _, _, _, _, _, d = two_members(tmp_path)
  other = write_eval(tmp_path / "other", [0, 1], ["0", "a"], [0.0, 1.0])
  with pytest.raises(AnoganError, match="scores other images than"):
    ensemble.combine([d["a"], other], [d["a_val"], d["b_val"]])
  with pytest.raises(AnoganError, match=r"scores.csv is missing; evaluate that workdir"):
    ensemble.combine([d["a"]], [str(tmp_path / "nowhere")])
  no_normals = write_eval(tmp_path / "no_normals", [1, 1], ["a", "a"], [0.0, 1.0])
  with pytest.raises(AnoganError, match="held-out normals; train the workdir with --val_fraction"):
    ensemble.combine([d["a"]], [no_normals])
