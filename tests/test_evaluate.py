import csv
import json
import os

import numpy as np
import pytest
from conftest import run_command

from anogan_tf import Config, evaluate_lib, train_lib
from anogan_tf.data import OneClassData, load_one_class
from anogan_tf.evaluation import metrics
from anogan_tf.visualization import plots


@pytest.mark.slow
def test_evaluate_on_a_small_real_mnist_run(tmp_path, mnist_dir):
  from sklearn.metrics import average_precision_score, roc_auc_score
  workdir = str(tmp_path / "run")
  config = Config(data_dir=mnist_dir, normal_classes=(0,), epochs=1, batch_size=64, test_examples=120,
                  map_steps=(10, 10), map_batch_size=64)
  data = load_one_class(config)
  data.x_train = data.x_train[:2048]  # 32 steps: a few seconds, yet G has learnt a dark background
  train_lib.train(config, workdir, data=data, progress=False)
  metrics = evaluate_lib.evaluate(config, workdir, progress=False)

  out = os.path.join(workdir, "eval")
  for name in ("metrics.json", "scores.csv", "roc.png", "pr.png", "score_histogram.png",
               "gallery.png", "mapping_loss.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  with open(os.path.join(out, "metrics.json")) as f:
    saved = json.load(f)
  assert saved == metrics
  assert 0.0 <= saved["auroc"] <= 1.0 and 0.0 <= saved["auprc"] <= 1.0
  assert saved["n_normal"] + saved["n_anomalous"] == 120
  assert saved["n_normal"] > 0 and saved["n_anomalous"] > 0
  with open(os.path.join(out, "scores.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 120
  assert list(rows[0]) == ["index", "label", "class", "score", "residual", "discrimination"]
  labels = np.array([int(r["label"]) for r in rows])
  classes = np.array([int(r["class"]) for r in rows])
  np.testing.assert_array_equal(labels, (classes != 0).astype(int))
  score = np.array([float(r["score"]) for r in rows])
  parts = 0.3 * np.array([float(r["residual"]) for r in rows]) + 0.7 * np.array([float(r["discrimination"]) for r in rows])
  np.testing.assert_allclose(score, parts, rtol=1e-5)

  # AUPRC both ways round, from the written scores: anomalies as positives (high score), and
  # normals as positives (low score). With ~90% anomalies, the two differ a lot.
  assert saved["auprc"] == pytest.approx(average_precision_score(labels, score), rel=1e-6)
  assert saved["auprc_normal"] == pytest.approx(average_precision_score(1 - labels, -score), rel=1e-6)
  assert abs(saved["auprc_normal"] - average_precision_score(1 - labels, score)) > 1e-3  # the sign matters
  assert abs(saved["auprc_normal"] - saved["auprc"]) > 0.1

  # Per anomalous class, from the written scores; weighted by the class counts they make up the
  # overall AUROC (every normal-anomaly pair counted once).
  by_class = saved["auroc_by_anomalous_class"]
  assert sorted(by_class, key=int) == [str(c) for c in np.unique(classes[labels == 1])]
  for c, value in by_class.items():
    pick = (labels == 0) | (classes == int(c))
    assert value == pytest.approx(roc_auc_score(labels[pick], score[pick]), rel=1e-6), c
  counts = {c: int(np.sum(classes == int(c))) for c in by_class}
  weighted = sum(counts[c] * by_class[c] for c in by_class) / sum(counts.values())
  assert weighted == pytest.approx(saved["auroc"], rel=1e-9)

  # The direction of the score: test digits of the normal class against the same kind of digits
  # inverted (white background), which no generator of dark-background digits can explain. A
  # score with its sign flipped gives AUROC ~0 here. (Real digits of other classes are no robust
  # check after a few training steps: a barely trained G gives digit 1 AUROC ~0.01.) 1.0 for
  # seeds 0-13 when this test was written.
  normal = data.x_test[data.y_test == 0][:16]
  inverted = -data.x_test[data.y_test == 1][:16]
  y = np.r_[np.zeros(len(normal), int), np.ones(len(inverted), int)]
  easy = OneClassData(x_train=data.x_train, x_test=np.concatenate([normal, inverted]), y_test=y,
                      classes_test=y, test_indices=np.arange(len(y)))
  direction = evaluate_lib.evaluate(config, workdir, data=easy, progress=False, out_dir=str(tmp_path / "easy"))
  assert direction["auroc"] > 0.9, direction


def test_auroc_by_anomalous_class_names_the_kind_of_anomaly_the_score_misses():
  # A folder's defects: scratches score above every good image, holes below every one.
  classes = np.array(["good"] * 4 + ["scratch"] * 3 + ["hole"] * 2)
  labels = (classes != "good").astype(int)
  score = np.array([0.4, 0.5, 0.6, 0.7, 0.9, 1.0, 1.1, 0.1, 0.2])
  assert metrics.auroc_by_class(labels, classes, score) == {"hole": 0.0, "scratch": 1.0}
  assert metrics.auroc_by_class(np.ones(3, int), np.array([1, 2, 2]), np.zeros(3)) == {}  # no normals


def test_pr_plot_shows_both_positive_classes(tmp_path, monkeypatch):
  from sklearn.metrics import average_precision_score
  figures = {}
  monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.update({os.path.basename(path): fig}))
  rng = np.random.default_rng(0)
  labels = (np.arange(100) >= 10).astype(int)
  scores = labels + rng.normal(0, 1, 100)
  auprc, auprc_normal = average_precision_score(labels, scores), average_precision_score(1 - labels, -scores)
  plots.roc_pr_plots(labels, scores, 0.5, auprc, str(tmp_path))
  legend = [t.get_text() for t in figures["pr.png"].axes[0].get_legend().get_texts()]
  assert f"anomalies positive: AUPRC {auprc:.4f}" in legend, legend
  assert f"normals positive: AUPRC {auprc_normal:.4f}" in legend, legend


def test_test_subset_is_fixed_and_holds_both_labels(mnist_dir):
  config = Config(data_dir=mnist_dir, normal_classes=(3,), test_examples=50, seed=4)
  a, b = load_one_class(config), load_one_class(config)
  np.testing.assert_array_equal(a.test_indices, b.test_indices)
  assert len(a.test_indices) == 50 and set(a.y_test) == {0, 1}
  assert a.x_test.min() >= -1 and a.x_test.max() <= 1 and a.x_test.shape[1:] == (28, 28, 1)
  full = load_one_class(config.replace(test_examples=0))
  assert len(full.y_test) == 10000 and full.y_test.sum() == 10000 - np.sum(full.classes_test == 3)


def test_unknown_dataset_is_a_one_line_error(tmp_path):
  result = run_command("train", f"--workdir={tmp_path / 'w'}", "--dataset=imagenet")
  assert result.returncode != 0
  lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
  assert lines[-1].startswith("error: unknown dataset 'imagenet'"), result.stderr
  assert "mnist" in lines[-1]  # names the fix: the valid datasets
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w")


@pytest.fixture(scope="module")
def tiny_workdir(mnist_workdir):
  """conftest's session workdir (seed 000's networks trained one batch of 256 images of class 1),
  scored on 40 test images with a short search."""
  config, workdir = mnist_workdir
  return config.replace(test_examples=40, map_steps=(4, 3), map_batch_size=40), workdir


def _scores(out_dir):
  with open(os.path.join(out_dir, "scores.csv")) as f:
    return np.array([float(row["score"]) for row in csv.DictReader(f)])


@pytest.mark.slow
def test_evaluate_honours_another_feature_layer(tiny_workdir, tmp_path):
  config, workdir = tiny_workdir
  default = evaluate_lib.evaluate(config, workdir, progress=False, out_dir=str(tmp_path / "act1"))
  flatten = evaluate_lib.evaluate(config.replace(feature_layer="flatten"), workdir, progress=False,
                                  out_dir=str(tmp_path / "flatten"))
  assert (default["feature_layer"], flatten["feature_layer"]) == ("act1", "flatten")
  a, b = _scores(tmp_path / "act1"), _scores(tmp_path / "flatten")
  assert len(a) == len(b) == 40
  assert np.abs(a - b).min() > 1e-4  # same z0 (same seed), another f(): every score moves


@pytest.mark.slow
def test_metrics_record_every_setting_that_changes_the_scores(tiny_workdir, tmp_path):
  config, workdir = tiny_workdir
  config = config.replace(lam=0.4, map_steps=(3, 2), map_lrs=(0.05, 0.02), map_reduction="sum", z_init="normal",
                          z_init_std=0.3, seed=5, map_seed=6, map_batch_size=16, adam_epsilon=1e-7,
                          feature_layer="conv2")
  metrics = evaluate_lib.evaluate(config, workdir, progress=False, out_dir=str(tmp_path / "eval"))
  with open(tmp_path / "eval" / "metrics.json") as f:
    assert json.load(f) == metrics
  recorded = {name: metrics[name] for name in ("lam", "map_steps", "map_lrs", "map_reduction", "z_init",
                                               "z_init_std", "seed", "map_seed", "feature_layer", "map_batch_size",
                                               "dataset", "normal_classes", "test_examples")}
  assert recorded == dict(lam=0.4, map_steps=[3, 2], map_lrs=[0.05, 0.02], map_reduction="sum", z_init="normal",
                          z_init_std=0.3, seed=5, map_seed=6, feature_layer="conv2", map_batch_size=16, dataset="mnist",
                          normal_classes=[1], test_examples=40)
  # The mapping's Adam: --adam_epsilon, and LatentMapper's betas (--adam_beta_1/2 are training's).
  assert (metrics["map_adam_beta_1"], metrics["map_adam_beta_2"], metrics["map_adam_epsilon"]) == (0.9, 0.999, 1e-7)
  assert metrics["map_restarts"] == 1 and metrics["strategy"] == "default"  # images_per_second ran on one device


# --- the held-out split belongs to the workdir: evaluate's --seed never moves it

@pytest.fixture(scope="module")
def seed3_workdir(tmp_path_factory):
  """An autoencoder trained (one epoch) with --seed=3 and a fifth of its normals held out, on a
  small mnist.npz of distinct noise images (so an image names its position in the train split)."""
  root = tmp_path_factory.mktemp("seed3")
  rng = np.random.default_rng(0)
  x_train = rng.integers(0, 256, (240, 28, 28), dtype=np.uint8)
  y_train = np.arange(240) % 2  # class 0 normal: 120 images, 24 held out
  x_test = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
  np.savez(root / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=np.arange(40) % 2)
  config = Config(model="ae", data_dir=str(root), normal_classes=(0,), val_fraction=0.2, seed=3, epochs=1,
                  batch_size=32, latent_dim=8, map_batch_size=64)
  workdir = str(root / "run")
  train_lib.train(config, workdir, progress=False)
  return workdir, x_train, y_train


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--seed=1"], ["--flagfile=experiments/base.flags"]], ids=["seed", "base.flags"])
def test_evaluate_on_the_held_out_split_with_another_seed_scores_no_training_image(seed3_workdir, args, tmp_path,
                                                                                   monkeypatch):
  from conftest import ROOT

  from anogan_tf.cli import flags as anogan_flags
  from anogan_tf.config import evaluation_config
  workdir, x_train, y_train = seed3_workdir
  monkeypatch.chdir(ROOT)  # base.flags (--seed=0), as a preset flagfile includes it
  trained = anogan_flags.workdir_config(workdir)  # as evaluate.main builds its settings
  config = evaluation_config(trained, anogan_flags.config_from_args([*args, "--eval_split=val"], trained))
  evaluate_lib.evaluate(config, workdir, progress=False, out_dir=str(tmp_path / "eval"))
  with open(tmp_path / "eval" / "scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  evaluated = {int(row["index"]) for row in rows}  # positions in the train split
  position = {image.tobytes(): i for i, image in enumerate(x_train)}
  training = load_one_class(trained, read_test=False).x_train  # the images the workdir was trained on
  trained_on = {position[np.round((image[..., 0] + 1) * 127.5).astype(np.uint8).tobytes()] for image in training}
  assert len(trained_on) == 96 and len(rows) == 48  # 120 normals: 96 trained on, 24 held out (+ 24 others)
  assert not evaluated & trained_on, sorted(evaluated & trained_on)
  normals = {int(row["index"]) for row in rows if row["label"] == "0"}
  assert normals == set(np.flatnonzero(y_train == 0)) - trained_on  # exactly the held-out normals
