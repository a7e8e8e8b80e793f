"""AnoGAN's warm start (f-AnoGAN's izi_f encoder): E trained after the GAN with G and D frozen,
`--encoder_epochs` resumable and addable to a finished GAN, `--initial_z=encoder` starting the
search at E(x), `--map_steps=0` scoring at E(x).

Tiny networks on synthetic blobs; the module's GANs and encoders train once (a few seconds)."""

import csv
import hashlib
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_command, synthetic_images

from anogan_tf import AnoganError, Config, LatentMapper, evaluate_lib, score_lib, train_lib
from anogan_tf.data import OneClassData
from anogan_tf.engine import history as history_lib
from anogan_tf.engine import workdir as workdir_lib
from anogan_tf.engine.driver import StageDriver
from anogan_tf.models import anogan
from anogan_tf.nn import losses
from anogan_tf.nn.networks import batchnorm_statistics

TINY = dict(latent_dim=8, g_dense_channels=8, g_filters=(8, 4), d_filters=(4, 8), e_filters=(4, 8),
            bn_momentum=0.5, batch_size=16, lr=5e-3, lr_decay_epoch=0, seed=0, deterministic=True,
            map_steps=(5, 5), map_batch_size=64, epochs=2, train_examples=64)
GAN = Config(**TINY)
WARM = GAN.replace(encoder_epochs=3, kappa=0.5)


def blobs_data(n=64):
  x = synthetic_images(n)
  off = np.concatenate([-x[:4], np.random.default_rng(7).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)])
  x_test = np.concatenate([synthetic_images(8, seed=9), off])
  y = np.r_[np.zeros(8, int), np.ones(8, int)]
  return OneClassData(x_train=x, x_test=x_test, y_test=y, classes_test=y, test_indices=np.arange(16))


def without_seconds(rows):
  return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def keras_weights(path):
  return [w.numpy() for w in keras.models.load_model(path).weights]


def file_digests(folder, skip=()):
  """{relative path: sha256} of every file under folder, except under the `skip` subfolders."""
  out = {}
  for root, dirs, files in os.walk(folder):
    dirs[:] = [d for d in dirs if os.path.relpath(os.path.join(root, d), folder) not in skip]
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def encoder_history(workdir):
  return history_lib.read_history(os.path.join(workdir, "encoder_history.csv"))


KILLED_RUN = r'''
import sys
import numpy as np
from anogan_tf import Config, train_lib
from anogan_tf.data import OneClassData
workdir, flags_path, x_path = sys.argv[1:]
x = np.load(x_path)
data = OneClassData(x_train=x, x_test=x[:2], y_test=np.array([0, 1]), classes_test=np.zeros(2, int),
                    test_indices=np.arange(2))
train_lib.train(Config.from_flagfile_text(open(flags_path).read()), workdir, data=data, progress=False)
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Workdirs: "straight" (the GAN, then E for 3 epochs, in one run); "added" (the GAN alone with
  kappa 1, then --encoder_epochs=3 --kappa=0.5 added), with digests of its GAN files before the
  encoder ran; "killed" (a copy of that GAN, its E SIGKILLed in another process after E's epoch-2
  checkpoint data is written but before it is committed, then run again); "gan_only" (a copy of
  that GAN, left as it is)."""
  root = tmp_path_factory.mktemp("warm")
  data = blobs_data()
  out = {"root": root, "data": data}
  for name in ("straight", "added", "killed", "gan_only"):
    out[name] = str(root / name)
  train_lib.train(WARM, out["straight"], data=data, progress=False)

  train_lib.train(GAN, out["added"], data=data, progress=False)
  shutil.copytree(out["added"], out["killed"])
  shutil.copytree(out["added"], out["gan_only"])
  out["gan_before"] = file_digests(out["added"])
  out["gan_weights_before"] = {net: keras_weights(os.path.join(out["added"], f"{net}.keras")) for net in anogan.NETWORKS}
  train_lib.train(WARM, out["added"], data=data, progress=False)

  np.save(root / "x.npy", data.x_train)
  (root / "flags.txt").write_text(WARM.to_flagfile())
  killed = subprocess.run([sys.executable, "-c", KILLED_RUN, out["killed"], str(root / "flags.txt"), str(root / "x.npy")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ANOGAN_TEST_HOOK": "encoder_checkpoint_written@1=kill"})
  assert killed.returncode == -9, killed.stderr[-3000:]
  out["killed_history"] = encoder_history(out["killed"])
  out["killed_checkpoints"] = sorted(os.listdir(os.path.join(out["killed"], "checkpoints", "encoder")))
  train_lib.train(WARM, out["killed"], data=data, progress=False)
  return out


# --- training E: the loss falls, G and D stay as they were

@pytest.mark.slow
def test_encoder_training_lowers_its_loss_and_leaves_g_and_d_alone():
  # D with BN and dropout too, so every kind of state G and D hold is checked.
  config = WARM.replace(d_batchnorm=True, d_dropout=0.25, kappa=2.0)
  keras.utils.set_random_seed(0)
  networks = anogan.build_networks(config)
  g, d = networks["generator"], networks["discriminator"]
  x = tf.constant(synthetic_images(32))
  pretrain = anogan.GANTrainer(config, networks)  # a few GAN steps (eagerly): BN statistics away from their start
  for i in range(3):
    pretrain.train_step(x, tf.constant(anogan.noise(np.random.default_rng(i), 32, config)), 0)
  frozen = [v.numpy().copy() for v in g.variables + d.variables]  # weights, BN statistics, dropout seeds
  assert batchnorm_statistics(g) and batchnorm_statistics(d)

  encoder = anogan.build_encoder(config)
  start = [v.numpy().copy() for v in encoder.weights]
  trainer = anogan.EncoderTrainer(config, networks, encoder)
  train = tf.function(lambda x: trainer.train_step(x, tf.zeros((32, 0)), 0))
  history = [{k: float(v) for k, v in train(x).items()} for _ in range(30)]
  for v, value in zip(g.variables + d.variables, frozen):
    np.testing.assert_array_equal(v.numpy(), value, err_msg=v.path)
  assert all(np.any(v.numpy() != s) for v, s in zip(encoder.trainable_weights, start))
  assert history[-1]["loss"] < 0.93 * history[0]["loss"], (history[0], history[-1])  # 0.89 when written
  for row in history:
    assert row["loss"] == pytest.approx(row["residual"] + config.kappa * row["discrimination"], rel=1e-5)
  # the loss is the scorer's residual and discrimination at z = E(x), kappa weighting f's part
  per_image, residual, discrimination, generated = trainer.loss_parts(x)
  z = encoder(x, training=False)
  np.testing.assert_allclose(generated, g(z, training=False), rtol=1e-6)
  np.testing.assert_allclose(residual, losses.residual_loss(x, generated), rtol=1e-6)
  np.testing.assert_allclose(per_image, residual + 2.0 * discrimination, rtol=1e-6)


def test_the_encoder_is_bounded_for_a_uniform_prior_and_not_for_a_normal_one():
  uniform, normal = anogan.build_encoder(GAN), anogan.build_encoder(GAN.replace(z_prior="normal"))
  assert (uniform.output_activation, normal.output_activation) == ("tanh", "linear")
  x = tf.constant(synthetic_images(4) * 1e3)  # far outside the images, to push the code out
  assert np.abs(uniform(x).numpy()).max() <= 1.0
  assert np.abs(normal(x).numpy()).max() > 1.0


# --- the driver: resumable, and addable to a finished GAN

def test_the_encoders_initial_weights_do_not_depend_on_what_ran_before():
  networks = anogan.build_networks(GAN)
  first = [w.numpy() for w in StageDriver(WARM, anogan.WARM_START, networks).network.weights]
  keras.utils.set_random_seed(123)
  anogan.build_networks(GAN.replace(seed=5))  # draws from Keras' global generator
  again = [w.numpy() for w in StageDriver(WARM, anogan.WARM_START, networks).network.weights]
  other_seed = [w.numpy() for w in StageDriver(WARM.replace(seed=1), anogan.WARM_START, networks).network.weights]
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], other_seed[0])


@pytest.mark.slow
def test_a_killed_and_resumed_encoder_run_equals_an_uninterrupted_one(runs):
  straight = runs["straight"]
  want = encoder_history(straight)
  assert [row["epoch"] for row in want] == [0, 1, 2]
  with open(os.path.join(straight, "encoder_history.csv")) as f:
    assert next(csv.reader(f)) == ["epoch", "loss", "residual", "discrimination", "seconds"]
  with open(os.path.join(straight, "history.csv")) as f:  # the GAN's columns as before
    assert next(csv.reader(f)) == ["epoch", "g_loss", "d_loss", "d_acc", "seconds"]
  # the kill came after epoch 2's history row and checkpoint data, before the commit
  assert [row["epoch"] for row in runs["killed_history"]] == [0, 1]
  assert "ckpt-2.index" in runs["killed_checkpoints"]
  for name in ("added", "killed"):
    assert without_seconds(encoder_history(runs[name])) == without_seconds(want), name
    for a, b in zip(keras_weights(os.path.join(straight, "encoder.keras")),
                    keras_weights(os.path.join(runs[name], "encoder.keras"))):
      np.testing.assert_array_equal(a, b, err_msg=name)
  for epoch in (1, 2, 3):
    assert os.path.getsize(os.path.join(straight, "samples", f"encoder_epoch_{epoch:04d}.png")) > 0
  assert os.path.getsize(os.path.join(straight, "encoder_loss.png")) > 0


@pytest.mark.slow
def test_encoder_epochs_added_to_a_finished_gan_train_only_the_encoder(runs):
  added, straight = runs["added"], runs["straight"]
  after = file_digests(added, skip=("checkpoints/encoder", "samples", "tensorboard"))
  before = {k: v for k, v in runs["gan_before"].items() if not k.startswith(("samples", "tensorboard"))}
  # the GAN's checkpoints and history are the same bytes; G and D were exported again, same weights
  for name in ("history.csv", "checkpoints/checkpoint", "checkpoints/ckpt-2.index",
               "checkpoints/ckpt-2.data-00000-of-00001"):
    assert after[name] == before[name], name
  for net in anogan.NETWORKS:
    for a, b in zip(runs["gan_weights_before"][net], keras_weights(os.path.join(added, f"{net}.keras"))):
      np.testing.assert_array_equal(a, b, err_msg=net)
  assert Config.from_flagfile_text(open(os.path.join(added, "flags.txt")).read()) == WARM
  # and E is the one trained in one go after the same GAN (so is that GAN: E's stage changes nothing before it)
  assert without_seconds(encoder_history(added)) == without_seconds(encoder_history(straight))
  for net in anogan.NETWORKS + (anogan.ENCODER,):
    for a, b in zip(keras_weights(os.path.join(straight, f"{net}.keras")), keras_weights(os.path.join(added, f"{net}.keras"))):
      np.testing.assert_array_equal(a, b, err_msg=net)


@pytest.mark.slow
def test_once_the_encoder_has_trained_its_settings_are_fixed_and_more_gan_epochs_retrain_it(runs, tmp_path):
  workdir = str(tmp_path / "w")
  shutil.copytree(runs["straight"], workdir)
  for change, shown in ((dict(kappa=2.0), "--kappa=0.5 (now 2.0)"), (dict(e_filters=(4, 4)), "--e_filters=4,8 (now 4,4)")):
    with pytest.raises(AnoganError) as error:
      train_lib.train(WARM.replace(**change), workdir, data=runs["data"], progress=False)
    message = str(error.value)
    assert "\n" not in message and shown in message, message
    assert os.path.join(workdir, "checkpoints", "encoder") in message
  # More GAN epochs change G: E starts over on the new G (its first epoch's loss is a fresh E's).
  train_lib.train(WARM.replace(epochs=3), workdir, data=runs["data"], progress=False)
  assert [row["epoch"] for row in history_lib.read_history(os.path.join(workdir, "history.csv"))] == [0, 1, 2]
  redone = encoder_history(workdir)
  assert [row["epoch"] for row in redone] == [0, 1, 2]
  assert redone[0]["loss"] != encoder_history(runs["straight"])[0]["loss"]
  checkpoint = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints", "encoder", "ckpt-3"))
  assert checkpoint.get_tensor("gan_epoch/.ATTRIBUTES/VARIABLE_VALUE") == 3


# --- scoring from E(x)

def warm_config(**changes):
  return WARM.replace(initial_z="encoder", **changes)


@pytest.mark.slow
def test_map_steps_0_scores_the_loss_at_e_of_x(runs, tmp_path):
  workdir, data = runs["straight"], runs["data"]
  config = warm_config(map_steps=(0,))
  metrics = evaluate_lib.evaluate(config, workdir, data=data, progress=False, out_dir=str(tmp_path / "eval"))
  assert (metrics["initial_z"], metrics["map_steps"]) == ("encoder", [0])
  assert metrics["auroc"] >= 0.9, metrics
  assert "mapping_loss.png" not in os.listdir(tmp_path / "eval")  # no search, no trajectory
  with open(tmp_path / "eval" / "scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))

  # by hand: z = E(x), then (1 - lam) mean |x - G(z)| + lam mean |f(x) - f(G(z))|, f = D's act1
  e, g, d = (keras.models.load_model(os.path.join(workdir, f"{net}.keras")) for net in ("encoder", "generator", "discriminator"))
  x = data.x_test
  generated = g(e(x, training=False), training=False).numpy()
  residual = np.abs(x - generated).reshape(len(x), -1).mean(axis=1)
  discrimination = np.abs(d.features(x).numpy() - d.features(generated).numpy()).mean(axis=1)
  want = 0.3 * residual + 0.7 * discrimination
  for column, values in (("score", want), ("residual", residual), ("discrimination", discrimination)):
    np.testing.assert_allclose([float(r[column]) for r in rows], values, rtol=1e-5, err_msg=column)

  # score: the same numbers for the same images
  np.save(tmp_path / "x.npy", x)
  scores = score_lib.score_images(config, workdir, str(tmp_path / "x.npy"), str(tmp_path / "scored"), progress=False).score
  np.testing.assert_allclose(scores, want, rtol=1e-5)


@pytest.mark.slow
def test_a_search_from_e_of_x_starts_at_the_0_step_score(runs):
  workdir, x = runs["straight"], runs["data"].x_test
  family = anogan
  at_start = family.make_scorer(warm_config(map_steps=(0,)), workdir_lib.load_networks(workdir, family, warm_config()))
  zero = at_start.map(x)
  assert zero.trajectory.shape == (16, 0) and at_start.trace_count == 1
  networks = workdir_lib.load_networks(workdir, family, warm_config())
  assert tuple(workdir_lib.load_networks(workdir, family)) == anogan.NETWORKS + (anogan.ENCODER,)
  np.testing.assert_allclose(zero.z, networks["encoder"](x, training=False).numpy(), rtol=1e-6)

  # one K: K steps at the last learning rate (1e-2); K1,K2: both stages
  single = family.make_scorer(warm_config(map_steps=(4,)), networks)
  assert (single.steps, single.learning_rates) == ((4,), (0.01,))
  assert single.settings()["map_lrs"] == [0.01] and single.settings()["initial_z"] == "encoder"
  two = family.make_scorer(warm_config(map_steps=(2, 3)), networks)
  assert (two.steps, two.learning_rates) == ((2, 3), (0.1, 0.01))
  result = single.map(x)
  np.testing.assert_allclose(result.trajectory[:, 0], zero.score, rtol=1e-5)
  assert np.all(result.score <= zero.score + 1e-6) and np.any(result.score < zero.score - 1e-5)
  # the same as a random-start mapper given z0 = E(x)
  given = LatentMapper(networks["generator"], networks["discriminator"], steps=(4,), learning_rates=(0.01,),
                       batch_size=64).map(x, initial_z=zero.z)
  np.testing.assert_allclose(result.score, given.score, rtol=1e-5)
  np.testing.assert_allclose(result.trajectory, given.trajectory, rtol=1e-5)


# --- errors

@pytest.mark.parametrize("changes, message", [
    (dict(map_steps=(0,), map_lrs=(0.1,)), "--map_steps=0 has an entry that is below 1; use 1 or more iterations per stage, e.g. 50,100 "
                           "(--map_steps=0, no search, only with --initial_z=encoder)"),
    (dict(map_steps=(0,), initial_z="encoder", map_lrs=(0.1,)), None),
    (dict(map_steps=(0, 5), initial_z="encoder"), "--map_steps=0,5 has an entry that is below 1"),
    (dict(map_steps=(10,)), "--map_steps and --map_lrs need the same number of stages (at least one); with "
                            "--initial_z=encoder a single --map_steps=K runs K steps at the last --map_lrs"),
    (dict(map_steps=(10,), initial_z="encoder"), None),
    (dict(model="ae", initial_z="encoder"), "--initial_z=encoder and --encoder_epochs are AnoGAN's warm start, not ae's"),
    (dict(model="vae", encoder_epochs=3), "--initial_z=encoder and --encoder_epochs are AnoGAN's warm start, not vae's"),
    (dict(encoder_epochs=-1), "--encoder_epochs=-1 is below 0"),
])
def test_settings_of_the_warm_start_are_checked(changes, message):
  if message is None:
    Config(**changes)
    return
  with pytest.raises(AnoganError, match=re.escape(message)):
    Config(**changes)


@pytest.mark.slow
def test_scoring_from_an_encoder_that_is_not_there_is_a_one_line_error(runs, tmp_path):
  gan_only = str(tmp_path / "gan")
  shutil.copytree(runs["straight"], gan_only)
  os.remove(os.path.join(gan_only, "encoder.keras"))
  np.save(tmp_path / "x.npy", runs["data"].x_test)
  for call in (lambda: evaluate_lib.evaluate(warm_config(map_steps=(0,)), gan_only, data=runs["data"], progress=False),
               lambda: score_lib.score_images(warm_config(), gan_only, str(tmp_path / "x.npy"), str(tmp_path / "out"))):
    with pytest.raises(AnoganError) as error:
      call()
    message = str(error.value)
    assert "\n" not in message and "encoder.keras is missing" in message and "--encoder_epochs" in message, message
  assert not os.path.exists(os.path.join(gan_only, "eval"))
  assert tuple(workdir_lib.load_networks(gan_only, anogan)) == anogan.NETWORKS  # no config: those there
  g, d = (keras.models.load_model(os.path.join(gan_only, f"{net}.keras")) for net in anogan.NETWORKS)
  with pytest.raises(AnoganError, match=re.escape("steps=[0]; every stage needs at least one iteration (steps=[0], "
                                                  "no search, only with an encoder to start from)")):
    LatentMapper(g, d, steps=(0,), learning_rates=(0.01,))


@pytest.mark.slow
def test_the_command_line_adds_an_encoder_to_a_finished_gan_and_explains_a_missing_one(runs, mnist_dir, tmp_path):
  # The module's finished GAN; the commands (their main, in this process) read its settings from
  # its flags.txt (E trains on MNIST's zeros, from $ANOGAN_DATA_DIR).
  gan, untouched = str(tmp_path / "gan"), str(tmp_path / "untouched")
  shutil.copytree(runs["gan_only"], gan)
  shutil.copytree(runs["gan_only"], untouched)
  before = file_digests(os.path.join(gan, "checkpoints"))
  trained = run_command("train", f"--workdir={gan}", "--encoder_epochs=1", "--kappa=0.5")
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert "warm-start encoder: 1 epochs" in trained.stdout and "trained 2 epochs" in trained.stdout, trained.stdout
  assert file_digests(os.path.join(gan, "checkpoints"), skip=("encoder",)) == before
  assert os.path.exists(os.path.join(gan, "encoder.keras"))
  evaluated = run_command("evaluate", f"--workdir={untouched}", "--initial_z=encoder", "--map_steps=0")
  assert evaluated.returncode == 2
  lines = evaluated.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and "--encoder_epochs" in lines[0], evaluated.stderr


# --- the .keras file

@pytest.mark.slow
def test_encoder_keras_loads_as_the_trained_encoder(runs):
  # From the file alone (no custom_objects); in a fresh interpreter that imports only anogan_tf:
  # test_families.py's round trip, every family's networks and stages (this encoder among them).
  path = os.path.join(runs["straight"], "encoder.keras")
  encoder = keras.models.load_model(path)
  assert type(encoder) is anogan.Encoder and encoder.output_activation == "tanh"
  assert encoder.get_config() == anogan.build_encoder(WARM).get_config()
  x = runs["data"].x_test
  assert np.abs(encoder(x, training=False).numpy()).max() <= 1.0
