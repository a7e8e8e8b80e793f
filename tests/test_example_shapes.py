"""Examples of any shape go through the generic code: a throwaway family (tests/tiny_family.py,
registered with one line in the registry as a new family is) on series (N, T, features) and on
clips (N, T, h, w, c) trains, resumes, evaluates, scores and exports with the driver, evaluate,
score and export that the image families use, its residual maps having the examples' shape."""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf
import tiny_family

from anogan_tf import AnoganError, Config, evaluate_lib, export_lib, models, score_lib, train_lib
from anogan_tf.data import OneClassData
from anogan_tf.evaluation import threshold

SHAPES = {"tiny_series": (12, 3), "tiny_clips": (3, 8, 8, 1)}  # examples of rank 2 and 4: arrays of rank 3 and 5


@pytest.fixture(params=sorted(SHAPES))
def family(request, monkeypatch):
  """(name, example shape), registered for this test as a family's registry line registers it."""
  name = request.param
  monkeypatch.setitem(models.FAMILIES, name, tiny_family.family(name, SHAPES[name]))
  return name, SHAPES[name]


def examples(shape, n, seed, noise=False):
  """Smooth examples in [-1, 1] (the normals), or uniform noise (the anomalies)."""
  rng = np.random.default_rng(seed)
  if noise:
    return rng.uniform(-1, 1, (n,) + shape).astype(np.float32)
  phase = rng.uniform(0, 2 * np.pi, (n,) + (1,) * len(shape))
  grid = np.indices(shape).sum(axis=0)[None] / 4.0
  return (0.8 * np.sin(grid + phase)).astype(np.float32)


def one_class_data(shape):
  normal, anomalous = examples(shape, 12, seed=2), examples(shape, 12, seed=3, noise=True)
  x_test = np.concatenate([normal, anomalous])
  y_test = np.repeat([0, 1], 12)
  return OneClassData(x_train=examples(shape, 64, seed=1), x_test=x_test, y_test=y_test, classes_test=y_test,
                      test_indices=np.arange(24), x_val=examples(shape, 16, seed=4))


@pytest.mark.slow
def test_a_family_of_other_examples_trains_resumes_evaluates_scores_and_exports(family, tmp_path):
  name, shape = family
  config = Config(model=name, epochs=1, batch_size=16, lr=1e-2, map_batch_size=16, val_fraction=0.2)
  data = one_class_data(shape)
  workdir = str(tmp_path / "run")

  # Train one epoch, then resume for a second.
  assert [row["epoch"] for row in train_lib.train(config, workdir, data=data, progress=False)] == [0]
  assert [row["epoch"] for row in train_lib.train(config.replace(epochs=2), workdir, data=data,
                                                   progress=False)] == [0, 1]
  assert os.path.exists(os.path.join(workdir, "autoencoder.keras"))
  record = threshold.read(workdir)  # on the 16 held-out normals the data gave
  assert record["n_val"] == 16 and record["threshold"] == pytest.approx(np.percentile(record["val_scores"], 99))

  # Evaluate: every example scored once, the gallery drawn from the examples' pictures.
  metrics = evaluate_lib.evaluate(config, workdir, data=data, progress=False)
  assert (metrics["n_normal"], metrics["n_anomalous"]) == (12, 12)
  assert metrics["auroc"] > 0.9  # noise reconstructs far worse than the smooth normals
  assert os.path.getsize(os.path.join(workdir, "eval", "gallery.png")) > 0
  assert metrics["threshold"] == record["threshold"] and 0 <= metrics["f1"] <= 1  # the decision applies
  with open(os.path.join(workdir, "eval", "scores.csv"), newline="") as f:
    evaluated = np.array([float(row["score"]) for row in csv.DictReader(f)])
  assert len(evaluated) == 24

  # The scorer's residual map has the examples' shape.
  from anogan_tf.engine.workdir import load_scorer
  scorer, _ = load_scorer(config, workdir, models.family(name))
  result = scorer.score(data.x_test)
  assert result.residual_map.shape == result.reconstruction.shape == data.x_test.shape

  # Score an array of them: the same scores as evaluate (the same chunks, so the same kernels).
  np.save(tmp_path / "x.npy", data.x_test)
  scored = score_lib.score_images(config, workdir, str(tmp_path / "x.npy"), str(tmp_path / "scored"), progress=False)
  np.testing.assert_array_equal(scored.score, evaluated)
  np.testing.assert_array_equal(scored.is_anomaly, scored.score > record["threshold"])
  assert len(os.listdir(tmp_path / "scored" / "reports")) == 24
  with pytest.raises(AnoganError, match=r"examples have shape .* but the model expects \(N,\) \+ "):
    np.save(tmp_path / "wrong.npy", data.x_test[:, :2])
    score_lib.score_images(config, workdir, str(tmp_path / "wrong.npy"), str(tmp_path / "wrong"), progress=False)

  # Export: the SavedModel takes (N,) + the example shape and gives the library's outputs.
  assert export_lib.export(config, workdir, str(tmp_path / "saved"))["threshold"] == pytest.approx(record["threshold"])
  export_lib.export(config, workdir, str(tmp_path / "saved"), threshold=float(np.median(evaluated)), overwrite=True)
  loaded = tf.saved_model.load(str(tmp_path / "saved"))
  out = loaded.signatures["serving_default"](images=tf.constant(data.x_test))
  np.testing.assert_allclose(out["score"].numpy(), result.score, rtol=1e-5, atol=1e-7)
  assert out["residual_map"].shape == data.x_test.shape
  np.testing.assert_array_equal(out["is_anomaly"].numpy(), out["score"].numpy() > np.float32(np.median(evaluated)))


def scores_by_strategy(folder):
  """{family: {strategy: the scores of its 24 examples}}: each family of SHAPES trained an epoch (on
  the global batch, split across the replicas under mirrored) and every example scored once, under
  --strategy=default and under --strategy=mirrored. For a process with two logical CPUs (the devices
  are fixed when TensorFlow starts): tests/test_distribute.py runs it in its own and checks that
  both give the same scores."""
  from anogan_tf.engine import distribute
  from anogan_tf.engine.workdir import load_networks
  out = {}
  for name, shape in SHAPES.items():
    models.FAMILIES[name] = tiny_family.family(name, shape)
    family, data = models.family(name), one_class_data(shape)
    scores = {}
    for strategy in ("default", "mirrored"):
      config = Config(model=name, epochs=1, batch_size=16, lr=1e-2, map_batch_size=16, strategy=strategy)
      workdir = os.path.join(folder, f"{name}_{strategy}")
      train_lib.train(config, workdir, data=data, progress=False)
      scorer, _ = distribute.make_scorer(family, config, lambda: load_networks(workdir, family, config))
      result = scorer.score(data.x_test)
      assert result.residual_map.shape == data.x_test.shape, result.residual_map.shape
      scores[strategy] = result.score.tolist()
    out[name] = scores
  return out
