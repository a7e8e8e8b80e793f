"""experiments/pictures_benchmark.py (the picture benchmark) and experiments/pictures.py (its runner's
tables): the same pictures from the same seed, folders the package reads as MVTec AD datasets (test
and validation), training boxes disjoint from validation and test, masks that mark what each defect
changed. No training: the runner's commands are the ones tests/test_your_own_images.py runs."""

import hashlib
import json
import os
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "experiments"))

import pictures  # noqa: E402
import pictures_benchmark  # noqa: E402
import pictures_scoring  # noqa: E402

from anogan_tf.config import Config  # noqa: E402
from anogan_tf.data import folder as folder_data  # noqa: E402

SMALL = dict(n_train=6, test_good=3, test_defect=2, val_good=2, val_defect=1, categories=["gravel", "hubble"])


def digest(root):
  files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
  return {f: hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest() for f in files}


def overlap(a, b):
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_training_boxes_are_disjoint_from_validation_and_test_boxes_and_hold_a_crop():
  for name, (_, _, side, boxes) in pictures_benchmark.CATEGORIES.items():
    for i in range(3):
      left, top, right, bottom = boxes[i]
      assert right - left >= side and bottom - top >= side, name
      for j in range(i + 1, 3):
        assert not overlap(boxes[i], boxes[j]), (name, i, j)


def test_the_benchmark_is_rebuilt_identically_and_reads_as_mvtec_datasets(tmp_path):
  manifest = pictures_benchmark.build(str(tmp_path / "a"), **SMALL)
  pictures_benchmark.build(str(tmp_path / "b"), **SMALL)
  pictures_benchmark.build(str(tmp_path / "c"), seed=1, **SMALL)
  assert digest(tmp_path / "a") == digest(tmp_path / "b")
  assert digest(tmp_path / "a") != digest(tmp_path / "c")
  assert sorted(manifest["categories"]) == ["gravel", "hubble"]
  defects = sorted(pictures_benchmark.DEFECTS)
  for name, channels in (("gravel", 1), ("hubble", 3)):
    for root, n_good, n_defect in ((tmp_path / "a" / name, 3, 2), (tmp_path / "a" / name / "validation", 2, 1)):
      config = folder_data.resolve_image_shape(Config(dataset="folder", data_dir=str(root), image_size=64))
      assert config.channels == channels
      data = folder_data.load_folder(config)
      n = n_good + n_defect * len(defects)
      assert len(data.x_train) == 6 and data.x_test.shape == (n, 64, 64, channels)
      assert sorted(set(data.classes_test)) == sorted(["good"] + defects)
      assert data.masks is not None
      per_picture = data.masks.reshape(n, -1).sum(1)
      assert (per_picture[data.y_test == 0] == 0).all() and (per_picture[data.y_test == 1] > 0).all()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("defect", pictures_benchmark.DEFECTS)
def test_each_defect_changes_the_picture_where_its_mask_says(defect, channels):
  rng = np.random.default_rng(0)
  foreign = [rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)]
  for _ in range(10):
    shape = (64, 64) if channels == 1 else (64, 64, 3)
    picture = rng.integers(60, 200, shape, dtype=np.uint8)  # varied: a blur or a flat fill changes it
    out, mask = pictures_benchmark.DRAW[defect](picture, rng, 1.0, foreign=foreign)
    assert out.shape == picture.shape and out.dtype == np.uint8 and mask.shape == (64, 64)
    changed = out != picture if channels == 1 else (out != picture).any(-1)
    assert mask.sum() >= 10
    assert (changed & mask).sum() >= 0.5 * mask.sum()  # most of the marked pixels changed
    assert not (changed & ~mask).any()  # and nothing outside it


def test_tables_give_the_mean_and_spread_over_seeds_per_category(tmp_path):
  folder = tmp_path / "runs" / "pictures_p" / "val"
  folder.mkdir(parents=True)
  values = {("brick", 0): 0.6, ("brick", 1): 0.8, ("coins", 0): 0.9}
  for (category, seed), v in values.items():
    record = {"auroc": v, "pixel_auroc": v / 2, "pixel_aupro": None, "train_seconds": 1.0, "train_commit": "c"}
    (folder / f"{category}_seed{seed}.json").write_text(json.dumps(record))
  pictures.write_tables(str(tmp_path), "p", "val", ["brick", "coins"], [0, 1])
  table = json.loads((tmp_path / "pictures_p_val.json").read_text())
  assert table["per_category"]["brick"]["auroc"]["mean"] == pytest.approx(0.7)
  assert table["per_category"]["brick"]["auroc"]["std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
  assert "pixel_aupro" not in table["per_category"]["brick"]
  assert table["mean_over_categories"] == {}  # coins lacks seed 1: no mean over categories yet
  assert table["runs_done"] == 3 and table["runs_total"] == 4
  assert (tmp_path / "pictures_p_val.md").exists()


def test_tables_give_each_defects_image_auroc_per_category(tmp_path):
  """Which defects a preset misses: each category's image AUROC per defect kind, averaged over the
  seeds that recorded it, in the json and as a column of the markdown table."""
  folder = tmp_path / "runs" / "pictures_p" / "val"
  folder.mkdir(parents=True)
  for seed, blur in ((0, 0.5), (1, 0.7)):
    record = {"auroc": 0.8, "pixel_auroc": 0.8, "pixel_aupro": 0.7, "train_seconds": 1.0, "train_commit": "c",
              "metrics": {"auroc_by_anomalous_class": {"blur": blur, "hole": 0.9}}}
    (folder / f"retina_seed{seed}.json").write_text(json.dumps(record))
  pictures.write_tables(str(tmp_path), "p", "val", ["retina"], [0, 1])
  table = json.loads((tmp_path / "pictures_p_val.json").read_text())
  assert table["per_category"]["retina"]["auroc_by_defect"] == pytest.approx({"blur": 0.6, "hole": 0.9})
  assert "blur 60.0, hole 90.0" in (tmp_path / "pictures_p_val.md").read_text()


def test_tables_name_the_flagfile_commands_and_cpus_the_runs_had(tmp_path):
  """--flagfile trains a preset's runs with another file: the table names that file, not the preset's;
  seeds run later by another command on another machine: the table names each command and CPU."""
  folder = tmp_path / "runs" / "pictures_draem" / "val"
  folder.mkdir(parents=True)
  for seed, cpu, command in ((0, "Intel", "python a"), (1, "AMD", "python b"), (2, "AMD", "python b")):
    record = {"auroc": 0.8, "pixel_auroc": 0.8, "pixel_aupro": 0.7, "train_seconds": 1.0, "train_commit": "c",
              "flagfile": "runs/tune/wide.flags", "cpu": cpu, "runner_command": command}
    (folder / f"grass_seed{seed}.json").write_text(json.dumps(record))
  pictures.write_tables(str(tmp_path), "draem", "val", ["grass"], [0, 1, 2])
  table = json.loads((tmp_path / "pictures_draem_val.json").read_text())
  assert table["flagfile"] == "runs/tune/wide.flags" and table["cpu"] == "AMD; Intel"
  md = (tmp_path / "pictures_draem_val.md").read_text()
  assert "Flagfile: `runs/tune/wide.flags`" in md and "Command: `python a`, `python b`" in md


def test_scoring_table_means_over_seeds_then_categories_and_per_seed_only_when_complete(tmp_path):
  metrics = lambda v: {"auroc": v, "pixel_auroc": v / 2, "pixel_aupro": v / 4}  # noqa: E731
  results = {("w1_s0", "brick", 0): metrics(0.6), ("w1_s0", "brick", 1): metrics(0.8),
             ("w1_s0", "coins", 0): metrics(1.0), ("w1_s0", "coins", 1): metrics(0.9),
             ("w3_s0", "brick", 0): metrics(0.5), ("w3_s0", "coins", 0): metrics(0.7)}
  table = pictures_scoring.tabulate(results, ["brick", "coins"], [0, 1], ["w1_s0", "w3_s0"])
  assert table["w1_s0"]["per_category"]["brick"]["auroc"] == pytest.approx(0.7)
  assert table["w1_s0"]["mean"]["auroc"] == pytest.approx((0.7 + 0.95) / 2)
  assert table["w1_s0"]["mean"]["pixel_aupro"] == pytest.approx((0.7 + 0.95) / 8)
  assert table["w1_s0"]["image_auroc_per_seed"] == {"0": pytest.approx(0.8), "1": pytest.approx(0.85)}
  assert table["w3_s0"]["image_auroc_per_seed"] == {"0": pytest.approx(0.6)}  # seed 1 not evaluated
  header = {"categories": ["brick", "coins"], "seeds": [0, 1], "runs": 4, "workdirs_note": "", "commit": "c",
            "cpu": "x", "command": "c"}
  text = open(pictures_scoring.write(str(tmp_path), "p", table, header)).read()
  assert "| w1_s0 | 70.0 | 95.0 | 82.5 | 0: 80.0, 1: 85.0 |" in text
  assert pictures_scoring.write(str(tmp_path), "p", table, header, "tops").endswith("pictures_p_tops_val.md")


def test_scoring_setting_names_keep_the_older_eval_folders_at_top_0():
  """A setting's name (its eval folder `eval_val_<name>`): a top share adds `_t<share>`; at 0 the
  name is the one before --draem_score_top existed, so earlier evaluations are found again."""
  assert pictures_scoring.setting_name(1, 2) == pictures_scoring.setting_name(1, 2, 0.0) == "w1_s2"
  assert pictures_scoring.setting_name(1, 2, 0.01) == "w1_s2_t0.01"
  assert pictures_scoring.setting_name(5, 0, 0.02) == "w5_s0_t0.02"
