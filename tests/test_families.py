"""The four tests every model family has, parametrized over the registry (anogan_tf.models.FAMILIES),
so a family added there is covered without editing this file: (1) shapes and ranges of its
networks, noise, samples, step and scorer; (2) .keras round trip in a fresh interpreter that
imports only anogan_tf; (3) a short run of the shared driver (train_lib.train) writes its history,
flags, samples and loss plot, and (the registry's first family, across a learning-rate phase
switch) interrupted and resumed equals an uninterrupted one bit for bit (--deterministic; every
family's resume: test_reliability.py, after a kill -9); (4) scoring through
evaluate_lib.evaluate and score_lib: off-manifold examples score above normal ones.

Examples of every family's own shape (models.base.example_shape: images, series, clips), made by
conftest.synthetic_examples (smooth, structured: the normals) and conftest.off_manifold_examples;
tiny networks; each family is trained once per worker (conftest.family_runs)."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import off_manifold_examples, synthetic_examples

from anogan_tf import Config, evaluate_lib, models, score_lib
from anogan_tf.data import OneClassData
from anogan_tf.engine import checkpoints, driver
from anogan_tf.engine import history as history_lib
from anogan_tf.engine import workdir as workdir_lib

FAMILIES = models.names()
# Tiny networks of every family's shape; BN momentum 0.5 so the moving statistics that scoring
# uses settle within the dozen steps of a run; few mapping steps for AnoGAN.
TINY = dict(latent_dim=8, g_dense_channels=8, g_filters=(8, 4), d_filters=(4, 8), e_filters=(4, 8),
            bn_momentum=0.5, batch_size=16, lr=5e-3, lr_decay_epoch=2, seed=0, deterministic=True,
            map_steps=(10, 10), map_batch_size=64, epochs=3)
# A family's own tiny settings beyond TINY (e.g. its dataset and example size), by --model value.
FAMILY_TINY = {
    "draem": dict(draem_width=4),
    "lstm_ae": dict(dataset="ucr", ucr_name="tiny", series_length=16, series_features=2, lstm_units=(16,),
                    batch_size=4, lr=1e-2),
    # clips of 4 frames of 32 x 32 (the smallest --image_size), windows of 3: two windows overlap per clip;
    # more and larger steps, as its linear output needs them to reach the background (-1) in one short run
    "convlstm_ae": dict(dataset="moving_mnist", image_size=32, clip_length=4, clip_window=3, e_strides=(4, 2),
                        convlstm_filters=(4, 4, 4), batch_size=8, lr=0.03),
}
# The settings that give a family larger examples, for the automatic chunk size (images: 128 x 128 RGB).
LARGER = dict(dataset="cifar10", image_size=128)
FAMILY_LARGER = {"lstm_ae": dict(series_length=4096), "convlstm_ae": dict(image_size=128)}


def tiny_config(name, **changes):
  return Config(model=name, **{**TINY, **FAMILY_TINY.get(name, {}), **changes})


def run_config(name):
  """The Config of conftest.family_runs' runs of family `name`. The driver picks each epoch's
  learning-rate phase (trainer.phase(epoch), each family's own: test_shapes_and_ranges), so one
  family's runs check that a resumed run crosses the phase switch as an uninterrupted one does:
  the registry's first; the others train one phase (two traced epochs fewer each)."""
  return tiny_config(name) if name == FAMILIES[0] else tiny_config(name, lr_decay_epoch=0)


def example_shape(config):
  return models.base.example_shape(models.family(config.model), config)


def examples(config, n, seed=0):
  """n normal examples of the shape config's family takes."""
  return synthetic_examples(n, example_shape(config), seed)


def blobs_data(config, n=64):
  x = examples(config, n)
  return OneClassData(x_train=x, x_test=x[:8], y_test=np.arange(8) % 2, classes_test=np.zeros(8, int),
                      test_indices=np.arange(8))


def without_seconds(rows):
  return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def keras_weights(path):
  return [w.numpy() for w in keras.models.load_model(path).weights]


@pytest.fixture
def runs(family_runs):
  """{family: (config, straight workdir, resumed workdir, straight history, resumed history)}:
  conftest.family_runs, shared with test_precision.py."""
  return family_runs


# --- 1. shapes and ranges

@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_and_ranges(name):
  family = models.family(name)
  assert family.NAME == name
  config = tiny_config(name, lr_decay_epoch=2)
  shape = example_shape(config)
  keras.utils.set_random_seed(0)
  networks = family.build_networks(config)
  assert tuple(networks) == family.NETWORKS
  for network in networks.values():  # registered: loads from .keras with no custom_objects
    assert keras.saving.get_registered_name(type(network)).startswith("anogan_tf>")

  noise = family.noise(np.random.default_rng(0), 6, config)
  assert noise.shape[0] == 6 and noise.dtype == np.float32
  samples = family.sample(networks, noise[:4])
  if samples is not None:
    assert samples.shape == (4,) + shape and samples.min() >= -1 and samples.max() <= 1

  trainer = family.make_trainer(config, networks)
  assert trainer.loss_names and trainer.n_phases >= 1
  assert [trainer.phase(e) for e in (0, 1, 2, 3)] == ([0, 0, 1, 1] if trainer.n_phases > 1 else [0] * 4)
  x = examples(config, 6)
  out = trainer.train_step(tf.constant(x), tf.constant(noise), 0)  # eagerly: traced in every run (family_runs)
  assert tuple(out) == trainer.loss_names
  assert all(v.shape == () and np.isfinite(v.numpy()) for v in out.values())
  assert set(trainer.checkpoint_items()).isdisjoint(set(family.NETWORKS) | {"epoch"})

  scorer = family.make_scorer(config, networks)
  assert tuple(scorer.image_shape) == shape and scorer.batch_size >= 1
  json.dumps(scorer.settings())  # recorded in metrics.json
  result = scorer.score(x)
  assert result.score.shape == (6,) and np.isfinite(result.score).all()
  assert result.reconstruction.shape == result.residual_map.shape == (6,) + shape
  assert result.reconstruction.min() >= -1 and result.reconstruction.max() <= 1
  if scorer.residual_is_error:
    np.testing.assert_allclose(result.residual_map, np.abs(x - result.reconstruction), atol=1e-6)
  else:  # the family's own anomaly map (a segmentation): in [0, 1]
    assert result.residual_map.min() >= 0 and result.residual_map.max() <= 1
  assert result.parts and all(part.shape == (6,) for part in result.parts.values())
  assert all(len(extra) == 6 for extra in result.extras.values())


# --- 2. .keras round trip in a fresh interpreter

def stage_networks(family):
  """The networks of the family's training stages (e.g. AnoGAN's warm-start encoder)."""
  return tuple(stage.network for stage in getattr(family, "STAGES", ()))


ROUND_TRIP = r'''
import json, sys
import anogan_tf, keras, numpy as np, tensorflow as tf
root = sys.argv[1]
for name in anogan_tf.models.names():
  family = anogan_tf.models.family(name)
  config = anogan_tf.Config.from_flagfile_text(open(f"{root}/{name}/flags.txt").read())
  stages = tuple(stage.network for stage in getattr(family, "STAGES", ()))
  networks = {net: keras.models.load_model(f"{root}/{name}/{net}.keras") for net in family.NETWORKS + stages}
  x = np.load(f"{root}/{name}/x.npy")
  for net, model in networks.items():
    assert type(model).__module__.startswith("anogan_tf."), (name, net, type(model))
    assert model.get_config() == json.load(open(f"{root}/{name}/{net}.json")), (name, net)
  for net in stages:  # a stage's network on the examples, as where it was saved
    np.testing.assert_allclose(networks[net](x, training=False).numpy(), np.load(f"{root}/{name}/{net}.npy"),
                               rtol=1e-5, atol=1e-6)
  scorer = family.make_scorer(config, {net: networks[net] for net in family.NETWORKS})
  scores = scorer.score_tensors(tf.constant(x)).score.numpy()  # eagerly, as where it was saved
  np.testing.assert_allclose(scores, np.load(f"{root}/{name}/scores.npy"), rtol=1e-5, atol=1e-6)
  print(name, sum(model.count_params() for model in networks.values()))
'''


@pytest.mark.slow
def test_keras_round_trip_in_a_fresh_interpreter(tmp_path):
  """Every family's networks and its stages' (anogan_tf's registered classes, so importing the
  package is all a program needs to load them) give back their settings and their outputs."""
  counts = []
  for name in FAMILIES:
    family, config = models.family(name), tiny_config(name)
    x = np.concatenate([examples(config, 3, seed=1), -examples(config, 2, seed=2)])
    keras.utils.set_random_seed(1)
    networks = family.build_networks(config)
    (tmp_path / name).mkdir()
    np.save(tmp_path / name / "x.npy", x)
    (tmp_path / name / "flags.txt").write_text(config.to_flagfile())
    # the scorer's graph, run eagerly (no trace; its compiled chunks: test_chunked_scoring_...)
    np.save(tmp_path / name / "scores.npy", family.make_scorer(config, networks).score_tensors(tf.constant(x)).score.numpy())
    for stage in getattr(family, "STAGES", ()):
      networks[stage.network] = stage.build(config, networks)[0]
      np.save(tmp_path / name / f"{stage.network}.npy", networks[stage.network](x, training=False).numpy())
    assert tuple(networks) == family.NETWORKS + stage_networks(family)
    for net, model in networks.items():
      model.save(tmp_path / name / f"{net}.keras")
      (tmp_path / name / f"{net}.json").write_text(json.dumps(model.get_config()))
    counts += [name, str(sum(model.count_params() for model in networks.values()))]
  result = subprocess.run([sys.executable, "-c", ROUND_TRIP, str(tmp_path)], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == counts


# --- 3. the shared driver: a run writes what it should; an interrupted run resumes to the
# uninterrupted one's numbers

@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_a_run_writes_its_history_flags_samples_and_loss_plot(name, runs):
  config, straight, _, history, _ = runs[name]
  family = models.family(name)
  built = driver.Driver(config)
  networks, names = built.networks, built.trainer.loss_names
  assert [row["epoch"] for row in history] == [0, 1, 2]
  assert all(np.isfinite(row[k]) for row in history for k in names)
  with open(os.path.join(straight, "history.csv")) as f:
    assert next(csv.reader(f)) == list(history_lib.history_fields(names))
  assert [row["epoch"] for row in history_lib.read_history(os.path.join(straight, "history.csv"))] == [0, 1, 2]
  for net in family.NETWORKS:
    assert len(keras_weights(os.path.join(straight, f"{net}.keras"))) == len(networks[net].weights) > 0, net
  assert Config.from_flagfile_text(open(os.path.join(straight, "flags.txt")).read()) == config
  assert "--model=" + name in open(os.path.join(straight, "flags.txt")).read().splitlines()
  samples = os.path.join(straight, "samples")
  has_samples = family.sample(networks, family.noise(np.random.default_rng(0), 2, config)) is not None
  assert sorted(os.listdir(samples)) == [f"epoch_{e:04d}.png" for e in (1, 2, 3)] if has_samples else not os.path.exists(samples)
  assert os.path.getsize(os.path.join(straight, "loss.png")) > 0


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(runs):
  """The registry's first family, 1 epoch then resumed to 3, across its learning-rate phase switch
  (run_config), to which each phase brings Adam instances of its own. Every family's resume, after a kill -9 at the subtlest point, is compared bit for
  bit with an uninterrupted run in test_reliability.py."""
  name = FAMILIES[0]
  config, straight, resumed, history, again = runs[name]
  run = driver.Driver(config)
  trainer = run.trainer
  assert config.lr_decay_epoch == 2 and trainer.n_phases > 1
  # AnoGAN's switch uses fresh Adam instances at lr_after_decay, as the seed does: phase 1's ran epoch 2 only
  assert name == "anogan"
  checkpoints.restore_checkpoint(run, os.path.join(resumed, "checkpoints"))
  batches = -(-len(blobs_data(config).x_train) // config.batch_size)
  assert [int(o.iterations.numpy()) for o in trainer.d_optimizers] == [2 * batches, batches]
  assert [int(o.iterations.numpy()) for o in trainer.g_optimizers] == [2 * batches * config.g_steps, batches * config.g_steps]
  assert [float(o.learning_rate.numpy()) for o in trainer.g_optimizers] == pytest.approx([config.lr, config.lr_after_decay])
  assert [o.epsilon for o in trainer.g_optimizers + trainer.d_optimizers] == [config.adam_epsilon] * 4
  names = trainer.loss_names
  assert without_seconds(history) == without_seconds(again)
  with open(os.path.join(resumed, "history.csv")) as f:
    assert next(csv.reader(f)) == list(history_lib.history_fields(names))
  assert without_seconds(history_lib.read_history(os.path.join(straight, "history.csv"))) == \
      without_seconds(history_lib.read_history(os.path.join(resumed, "history.csv")))
  for net in models.family(name).NETWORKS:
    a, b = keras_weights(os.path.join(straight, f"{net}.keras")), keras_weights(os.path.join(resumed, f"{net}.keras"))
    assert len(a) == len(b) > 0
    for u, v in zip(a, b):
      np.testing.assert_array_equal(u, v, err_msg=net)


# --- 4. scoring: off-manifold examples score above normal ones, through evaluate and score

@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_evaluate_scores_off_manifold_images_above_normal_ones(name, runs, tmp_path):
  config, straight, _, _, _ = runs[name]
  normal = examples(config, 4, seed=7)  # not trained on
  off = off_manifold_examples(normal, seed=7)  # e.g. inverted blobs and noise: off the training manifold
  y = np.r_[np.zeros(4, int), np.ones(4, int)]
  data = OneClassData(x_train=normal, x_test=np.concatenate([normal, off]), y_test=y, classes_test=y,
                      test_indices=np.arange(8))
  out = tmp_path / "eval"
  metrics = evaluate_lib.evaluate(config, straight, data=data, progress=False, out_dir=str(out))
  # of the 16 (normal, off) pairs, 0.95 leaves none misordered: every off example scores above every normal one
  assert metrics["auroc"] >= 0.95, metrics
  assert metrics["model"] == name and json.load(open(out / "metrics.json")) == metrics
  scorer = models.family(name).make_scorer(config, workdir_lib.load_networks(straight, models.family(name)))
  assert {k: metrics[k] for k in scorer.settings()} == scorer.settings()
  with open(out / "scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  parts = list(scorer.score(normal[:1]).parts)
  assert list(rows[0]) == ["index", "label", "class", "score"] + parts and len(rows) == 8
  trajectory = "trajectory" in scorer.score(normal[:1]).extras
  written = set(os.listdir(out))
  assert written == set(evaluate_lib.EVAL_FILES) - (set() if trajectory else set(evaluate_lib.TRAJECTORY_FILES))

  # score: the same images as an .npy, the same scores (same seed), one report each
  np.save(tmp_path / "images.npy", data.x_test)
  scores = score_lib.score_images(config, straight, str(tmp_path / "images.npy"), str(tmp_path / "scored"),
                                  progress=False).score
  np.testing.assert_allclose(scores, [float(r["score"]) for r in rows], rtol=1e-5)
  with open(tmp_path / "scored" / "scores.csv", newline="") as f:
    scored = list(csv.DictReader(f))
  assert list(scored[0]) == ["file", "score", "is_anomaly"] + parts + ["report"]
  assert all(os.path.getsize(tmp_path / "scored" / r["report"]) > 0 for r in scored)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_ink_power_divides_every_familys_score_by_the_images_ink(name, runs):
  """--ink_power=p: each image's score over its ink (mean of (x + 1) / 2) to the p, the same in the
  chunked scorer and in the traced graph export serves; parts, reconstructions and the search
  unchanged; recorded in the settings only when set (a stored threshold of p = 0 still applies)."""
  config, straight, _, _, _ = runs[name]
  family = models.family(name)
  networks = workdir_lib.load_networks(straight, family)
  x = examples(config, 6, seed=9)
  x = np.concatenate([x, np.full((2,) + x.shape[1:], -1.0, np.float32)])  # 2 without ink
  plain = family.make_scorer(config, networks).score(x)
  scorer = family.make_scorer(config.replace(ink_power=0.5), networks)
  inked = scorer.score(x)
  ink = np.maximum(((x + 1) / 2).reshape(len(x), -1).mean(axis=1), 1e-3)
  np.testing.assert_allclose(inked.score, plain.score / np.sqrt(ink), rtol=1e-5)
  np.testing.assert_allclose(inked.reconstruction, plain.reconstruction, rtol=1e-5, atol=1e-6)
  for part in plain.parts:
    np.testing.assert_allclose(inked.parts[part], plain.parts[part], rtol=1e-5)
  traced = family.make_scorer(config, networks).score_tensors(tf.constant(x)).score.numpy()  # anogan: keyed starts
  np.testing.assert_allclose(scorer.score_tensors(tf.constant(x)).score.numpy(), traced / np.sqrt(ink), rtol=1e-5)
  assert scorer.settings()["ink_power"] == 0.5 and "ink_power" not in family.make_scorer(config, networks).settings()


@pytest.mark.parametrize("name", FAMILIES)
def test_automatic_chunk_size_fits_the_available_memory(name, monkeypatch):
  """--map_batch_size=0: the scorer budgets every layer output of its networks per example, so a
  smaller machine or larger examples give smaller chunks (a 256 x 256 RGB folder on a laptop must
  not ask for 1,024 images at once); an explicit size is kept."""
  from anogan_tf.nn import memory
  family = models.family(name)
  sizes = {}
  larger = FAMILY_LARGER.get(name, LARGER)
  for side, config in (("small", tiny_config(name, map_batch_size=0)),
                       ("large", tiny_config(name, map_batch_size=0, **larger))):
    networks = family.build_networks(config)
    plenty = family.make_scorer(config, networks)
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 64 << 20)  # 64 MB free
    sizes[side] = family.make_scorer(config, networks).batch_size
    monkeypatch.undo()
    assert family.make_scorer(config.replace(map_batch_size=48), networks).batch_size == 48
  assert plenty.batch_size <= memory.MAX_AUTO_BATCH
  assert sizes["small"] > sizes["large"] >= 1, sizes
  assert sizes["small"] & (sizes["small"] - 1) == 0 and sizes["large"] & (sizes["large"] - 1) == 0  # powers of two


@pytest.mark.parametrize("name", FAMILIES)
def test_chunked_scoring_equals_one_at_a_time_with_one_trace_per_chunk_size(name):
  """Every scorer runs in fixed-size chunks, the last one padded, compiled once per chunk size: a
  chunk's other rows (or padding) change no example's numbers, and scoring again does not retrace."""
  family = models.family(name)
  config = tiny_config(name)
  networks = family.build_networks(config)
  x = examples(config, 7, seed=3)
  chunked = family.make_scorer(config, networks, batch_size=3)
  together = chunked.score(x)  # chunks of 3, 3 and 1 padded to 3
  single = family.make_scorer(config, networks, batch_size=1)
  alone = models.base.ScoreResult.concatenate([single.score(x[i:i + 1]) for i in range(len(x))])
  assert [len(c) for c in chunked.score_chunks(x)] == [3, 3, 1]
  assert set(together.parts) == set(alone.parts) and set(together.extras) == set(alone.extras)
  # float32 kernels may order a sum differently by batch size: equal to float32 rounding, not bitwise.
  # A search for z (takes_initial_z) carries such rounding through its Adam steps on these untrained
  # networks' flat losses; tests/test_mapper.py compares it on trained ones, with its own tolerance.
  if not chunked.takes_initial_z:
    np.testing.assert_allclose(together.score, alone.score, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(together.reconstruction, alone.reconstruction, atol=1e-4)
    np.testing.assert_allclose(together.residual_map, alone.residual_map, atol=1e-4)
    for key in together.parts:
      np.testing.assert_allclose(together.parts[key], alone.parts[key], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(chunked.score(x).score, together.score)  # the same compiled function again
  else:
    chunked.score(x)  # a search draws new starts from its stream; what matters here is no retrace
  assert chunked.trace_count == 1 and single.trace_count == 1
