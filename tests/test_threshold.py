"""The decision threshold (anogan_tf/evaluation/threshold.py): stored at the end of training from the held-out
normals, kept across resumes, refused for scores computed otherwise, and the decisions and
metrics evaluate and score make with it; TensorBoard's sample images and score histograms."""

import csv
import glob
import json
import os
import shutil

import numpy as np
import pytest
from conftest import run_command, synthetic_images

from anogan_tf import AnoganError, Config, evaluate_lib, models, score_lib, train_lib
from anogan_tf.data import to_float_images, validation_split
from anogan_tf.engine import workdir as workdir_lib
from anogan_tf.evaluation import threshold

TINY = dict(g_dense_channels=8, g_filters=(4, 4), d_filters=(4, 8), batch_size=64, latent_dim=8, map_steps=(3, 2),
            map_batch_size=64)
NORMAL = 1  # blobs on a dark background; class 0 is the same blobs inverted (a light background)


def blob_pixels(n, seed, inverted=False):
  x = synthetic_images(n, seed=seed)[..., 0]
  return np.round(((-x if inverted else x) + 1) * 127.5).astype(np.uint8)


def write_dataset(folder, n_train=160, n_test=40):
  """mnist.npz with class 1 = blobs and class 0 = inverted blobs, alternating."""
  os.makedirs(folder, exist_ok=True)
  def split(n, seed):
    y = np.arange(n) % 2
    x = np.where((y == NORMAL)[:, None, None], blob_pixels(n, seed), blob_pixels(n, seed, inverted=True))
    return x, y
  (x_train, y_train), (x_test, y_test) = split(n_train, 0), split(n_test, 1)
  np.savez(os.path.join(folder, "mnist.npz"), x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
  return str(folder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(config, workdir): 2 epochs with a quarter of the 80 normal training images held out."""
  root = tmp_path_factory.mktemp("threshold")
  config = Config(data_dir=write_dataset(root / "data"), normal_classes=(NORMAL,), epochs=2, val_fraction=0.25, **TINY)
  workdir = str(root / "run")
  train_lib.train(config, workdir, progress=False)
  return config, workdir


def read_record(workdir):
  with open(os.path.join(workdir, "threshold.json")) as f:
    return json.load(f)


def held_out_images(config):
  """The held-out normals, found here from the data file and data.validation_split."""
  with np.load(os.path.join(config.data_dir, "mnist.npz")) as f:
    x_train, y_train = f["x_train"], f["y_train"]
  kept, held, _ = validation_split(y_train, np.asarray(config.normal_classes), config.val_fraction, config.seed)
  return to_float_images(x_train[held]), len(kept)


@pytest.mark.slow
def test_threshold_is_the_percentile_of_the_held_out_normals_scores(trained):
  config, workdir = trained
  record = read_record(workdir)
  held, n_kept = held_out_images(config)
  assert record["n_val"] == len(held) == 20 and n_kept == 60
  family = models.family(config.model)
  networks = workdir_lib.load_networks(workdir, family, config)
  scorer = family.make_scorer(config, networks)
  scores = scorer.score(held).score
  assert record["threshold"] == pytest.approx(np.percentile(scores, 99), rel=1e-5)
  assert record["percentile"] == 99.0
  np.testing.assert_allclose(record["val_scores"], scores, rtol=1e-5)
  assert record["val_scores_quantiles"]["50"] == pytest.approx(np.median(scores), rel=1e-5)
  assert record["val_scores_quantiles"]["100"] == pytest.approx(scores.max(), rel=1e-5)
  assert record["scorer"] == json.loads(json.dumps(scorer.settings()))
  assert record["weights_sha256"] == threshold.weights_sha256(networks)
  # the held-out images were not trained on: training saw the other 60 normals only
  from anogan_tf.data import load_one_class
  assert len(load_one_class(config).x_train) == n_kept


def test_no_val_fraction_no_threshold(tmp_path):
  config = Config(**TINY)  # --val_fraction=0: training's end-of-run hook stores nothing
  assert threshold.store_after_training(config, str(tmp_path), progress=False) is None
  assert os.listdir(tmp_path) == []
  decision = threshold.decide(config, str(tmp_path), {}, {})
  assert decision.threshold is None and decision.is_anomaly([1.0]) is None
  assert "--val_fraction=0" in decision.note and "\n" not in decision.note


@pytest.mark.slow
def test_threshold_is_stored_once_a_run_finishes_and_survives_resume(trained, tmp_path, monkeypatch):
  config, _ = trained
  workdir = str(tmp_path / "run")
  path = os.path.join(workdir, "threshold.json")
  monkeypatch.setenv("ANOGAN_TEST_HOOK", "loss@1=nan")  # stops at epoch 2, before the end
  with pytest.raises(AnoganError, match="diverged at epoch 2"):
    train_lib.train(config, workdir, progress=False)
  assert not os.path.exists(path)
  monkeypatch.delenv("ANOGAN_TEST_HOOK")
  train_lib.train(config, workdir, progress=False)  # resumes at epoch 2 and finishes
  first = read_record(workdir)
  networks = workdir_lib.load_networks(workdir, models.family(config.model), config)
  assert first["weights_sha256"] == threshold.weights_sha256(networks) and first["n_val"] == 20
  text, mtime = open(path).read(), os.stat(path).st_mtime_ns

  def no_mapping(*args, **kwargs):
    raise AssertionError("the held-out normals were scored again")
  monkeypatch.setattr(threshold, "validation_normals", no_mapping)
  train_lib.train(config, workdir, progress=False)  # finished: nothing to train, the threshold is kept
  assert open(path).read() == text and os.stat(path).st_mtime_ns == mtime

  # Another percentile on a rerun (train's end-of-run hook): from the stored scores, still without mapping.
  threshold.store_after_training(config.replace(threshold_percentile=80.0), workdir, progress=False)
  record = read_record(workdir)
  assert record["percentile"] == 80.0
  assert record["threshold"] == pytest.approx(np.percentile(first["val_scores"], 80), rel=1e-12)
  monkeypatch.undo()

  # Trained further: new weights, so the held-out normals are scored again, once.
  calls = []
  original = threshold.validation_normals
  monkeypatch.setattr(threshold, "validation_normals", lambda c: calls.append(1) or original(c))
  train_lib.train(config.replace(epochs=3), workdir, progress=False)
  assert calls == [1]
  record = read_record(workdir)
  assert record["weights_sha256"] != first["weights_sha256"] and record["val_scores"] != first["val_scores"]


def test_overwrite_removes_the_threshold(tmp_path):
  (tmp_path / "threshold.json").write_text("{}\n")
  train_lib.prepare_workdir(Config(), str(tmp_path), overwrite=True)  # what train --overwrite does first
  assert not os.path.exists(tmp_path / "threshold.json") and os.path.exists(tmp_path / "flags.txt")


@pytest.mark.slow
def test_threshold_is_refused_for_other_settings_or_weights(trained, tmp_path):
  config, workdir = trained
  family = models.family(config.model)
  networks = workdir_lib.load_networks(workdir, family, config)
  same = threshold.decide(config, workdir, family.make_scorer(config, networks).settings(), networks)
  assert same.threshold == read_record(workdir)["threshold"]
  # another batch size gives the same scores: still applies
  bigger = config.replace(map_batch_size=8)
  assert threshold.decide(bigger, workdir, family.make_scorer(bigger, networks).settings(), networks).threshold \
      == same.threshold
  for changes, fragment in ((dict(map_steps=(5, 5)), "--map_steps=3,2 and these scores with --map_steps=5,5"),
                            (dict(lam=0.1), "--lam=0.7 and these scores with --lam=0.1"),
                            (dict(feature_layer="conv2"), "--feature_layer=act1 and these scores with --feature_layer=conv2")):
    other = config.replace(**changes)
    decision = threshold.decide(other, workdir, family.make_scorer(other, networks).settings(), networks)
    assert decision.threshold is None and decision.is_anomaly([0.0]) is None, changes
    assert "does not apply" in decision.note and fragment in decision.note, decision.note
    assert "\n" not in decision.note
  generator = networks["generator"]
  generator.weights[0].assign(generator.weights[0] + 1e-3)  # as if trained further since
  decision = threshold.decide(config, workdir, family.make_scorer(config, networks).settings(), networks)
  assert decision.threshold is None and "other weights of generator.keras" in decision.note

  # A damaged threshold.json is a one-line error naming the fix; a missing one is no error.
  for content in ("{not json", json.dumps({"threshold": "high"})):
    damaged = tmp_path / "damaged"
    shutil.rmtree(damaged, ignore_errors=True)
    damaged.mkdir()
    (damaged / "threshold.json").write_text(content)
    with pytest.raises(AnoganError, match=r"threshold.json is damaged .*; delete it and rerun the train command"):
      threshold.read(str(damaged))
  missing = threshold.decide(config, str(tmp_path), {}, {})
  assert missing.threshold is None and "threshold.json is missing" in missing.note


@pytest.mark.slow
def test_a_damaged_threshold_json_stops_training_in_one_line_touching_nothing(trained, tmp_path, monkeypatch):
  """A rerun of train meets a threshold.json it cannot read: a one-line error naming the file and
  the fix, before anything is written (the file is not silently computed again)."""
  config, workdir = trained
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  monkeypatch.setattr(threshold, "validation_normals", lambda c: pytest.fail("the held-out normals were scored"))
  for content in ("{not json", json.dumps({"threshold": "high"})):
    (copy / "threshold.json").write_text(content)
    before = {p: open(p, "rb").read() for p in glob.glob(f"{copy}/**", recursive=True) if os.path.isfile(p)}
    with pytest.raises(AnoganError) as error:
      train_lib.train(config, str(copy), progress=False)
    message = str(error.value)
    assert message.startswith(f"{copy}/threshold.json is damaged (") and "\n" not in message, message
    assert f"delete it and rerun the train command on {copy}" in message, message
    after = {p: open(p, "rb").read() for p in glob.glob(f"{copy}/**", recursive=True) if os.path.isfile(p)}
    assert after == before


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
  """(metrics, eval folder) of evaluate on the trained workdir's test split."""
  config, workdir = trained
  out = tmp_path_factory.mktemp("evaluated") / "eval"
  return evaluate_lib.evaluate(config, workdir, progress=False, out_dir=str(out)), out


@pytest.mark.slow
def test_evaluate_reports_precision_recall_f1_as_sklearn_computes_them(trained, evaluated):
  from sklearn.metrics import f1_score, precision_score, recall_score
  config, workdir = trained
  metrics, out = evaluated
  with open(out / "scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  labels = np.array([int(r["label"]) for r in rows])
  scores = np.array([float(r["score"]) for r in rows])
  assert metrics["threshold"] == read_record(workdir)["threshold"] and metrics["threshold_percentile"] == 99.0
  flagged = (scores > metrics["threshold"]).astype(int)
  assert 0 < flagged.sum() < len(flagged)  # a real decision, not all or nothing
  assert metrics["precision"] == pytest.approx(precision_score(labels, flagged), abs=1e-12)
  assert metrics["recall"] == pytest.approx(recall_score(labels, flagged), abs=1e-12)
  assert metrics["f1"] == pytest.approx(f1_score(labels, flagged), abs=1e-12)
  assert json.load(open(out / "metrics.json")) == metrics

  # The F1-best threshold, chosen on these labels: no threshold does better, and it gives its F1.
  best = metrics["best_f1_on_eval_split"]
  candidates = np.concatenate([[-np.inf], np.unique(scores)])
  assert best["f1"] == pytest.approx(max(f1_score(labels, (scores > t).astype(int)) for t in candidates), abs=1e-12)
  assert best["f1"] == pytest.approx(f1_score(labels, (scores > best["threshold"]).astype(int)), abs=1e-12)
  assert best["precision"] == pytest.approx(precision_score(labels, (scores > best["threshold"]).astype(int)), abs=1e-12)


@pytest.mark.slow
def test_score_decides_with_the_threshold(trained, tmp_path):
  config, workdir = trained
  images = np.concatenate([blob_pixels(6, seed=5), blob_pixels(6, seed=6, inverted=True)])
  np.save(tmp_path / "x.npy", images)
  result = run_command("score", f"--workdir={workdir}", f"--input={tmp_path / 'x.npy'}",
                   f"--output={tmp_path / 'out'}", "--threshold_percentile=50")
  assert result.returncode == 0, result.stderr[-2000:]
  record = read_record(workdir)
  median = np.percentile(record["val_scores"], 50)
  lines = result.stdout.strip().splitlines()
  assert lines[0] == f"threshold {median:.6g}: the 50th percentile of 20 held-out normal scores", lines
  with open(tmp_path / "out" / "scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0])[:3] == ["file", "score", "is_anomaly"]
  flags = [int(r["is_anomaly"]) for r in rows]
  assert flags == [int(float(r["score"]) > median) for r in rows]
  assert 0 < sum(flags) < len(flags)
  assert f"{sum(flags)} anomalous" in lines[1]

  # Other mapping settings: the threshold does not apply, and is_anomaly stays empty.
  scored = score_lib.score_images(config.replace(map_steps=(4, 4)), workdir, str(tmp_path / "x.npy"),
                                  str(tmp_path / "other"), progress=False)
  assert scored.is_anomaly is None
  assert "does not apply: it was computed with --map_steps=3,2 and these scores with --map_steps=4,4" in \
      scored.decision.note
  with open(tmp_path / "other" / "scores.csv", newline="") as f:
    assert {r["is_anomaly"] for r in csv.DictReader(f)} == {""}


def read_events(folder, values=None):
  """{tag: [(step, plugin name)]} of every events file under `folder`; `values`, if given, gets
  {tag: [its tensor]}."""
  import tensorflow as tf
  tags = {}
  for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append((event.step, value.metadata.plugin_data.plugin_name))
        if values is not None:
          values.setdefault(value.tag, []).append(tf.make_ndarray(value.tensor))
  return tags


@pytest.mark.slow
def test_tensorboard_has_sample_images_and_score_histograms(trained, evaluated):
  config, workdir = trained
  training = read_events(os.path.join(workdir, "tensorboard"))
  assert sorted(training["samples"]) == [(1, "images"), (2, "images")]
  assert sorted(training["d_loss"]) == [(1, "scalars"), (2, "scalars")]
  metrics, out = evaluated
  values = {}
  events = read_events(os.path.join(out, "tensorboard"), values)
  assert events["scores/normal"] == [(0, "histograms")] and events["scores/anomalous"] == [(0, "histograms")]
  # each histogram (buckets of [left, right, count]) counts its own images
  assert values["scores/normal"][0][:, 2].sum() == metrics["n_normal"]
  assert values["scores/anomalous"][0][:, 2].sum() == metrics["n_anomalous"]
  assert sorted(events["mapping_loss"]) == [(step, "scalars") for step in range(1, sum(config.map_steps) + 1)]

  # Evaluated again, with other mapping settings: the events are replaced, not added to; and the
  # threshold does not apply to these scores (metrics.json says why).
  other = evaluate_lib.evaluate(config.replace(map_steps=(2, 2)), workdir, progress=False, out_dir=str(out))
  events = read_events(os.path.join(out, "tensorboard"))
  assert sorted(step for step, _ in events["mapping_loss"]) == [1, 2, 3, 4]
  assert len(events["scores/normal"]) == 1
  assert not [n for n in os.listdir(out) if n.startswith(".")]
  assert not {"threshold", "precision", "recall", "f1"} & set(other)
  assert "does not apply" in other["threshold_note"] and "best_f1_on_eval_split" in other
