import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from anogan_tf import Config, train_lib
from anogan_tf.data import OneClassData
from conftest import synthetic_images

TINY = dict(batch_size=32, epochs=2, seed=3)


def tiny_data(n=80):
  x = synthetic_images(n)
  return OneClassData(x_train=x, x_test=x[:8], y_test=np.arange(8) % 2, classes_test=np.zeros(8, int),
                      test_indices=np.arange(8))


def history_epochs(workdir):
  with open(os.path.join(workdir, "history.csv")) as f:
    return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_two_epochs_write_everything_then_resume(tmp_path):
  workdir = str(tmp_path / "run")
  data = tiny_data()
  config = Config(**TINY)
  history = train_lib.train(config, workdir, data=data, progress=False)
  assert [row["epoch"] for row in history] == [0, 1]
  for name in ("flags.txt", "history.csv", "generator.keras", "discriminator.keras", "loss.png",
               "samples/epoch_0001.png", "samples/epoch_0002.png", "checkpoints/checkpoint"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert Config.from_flagfile_text(open(os.path.join(workdir, "flags.txt")).read()) == config
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-2")
  first_rows = open(os.path.join(workdir, "history.csv")).read().splitlines()

  # Rerun with more epochs: resumes at epoch 2 with the optimizers' state restored.
  history = train_lib.train(config.replace(epochs=3), workdir, data=data, progress=False)
  assert [row["epoch"] for row in history] == [0, 1, 2]
  assert open(os.path.join(workdir, "history.csv")).read().splitlines()[:3] == first_rows
  trainer = train_lib.GANTrainer(config)
  trainer.checkpoint().restore(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")))
  batches = -(-80 // 32)
  assert int(trainer.epoch.numpy()) == 3
  assert int(trainer.d_optimizers[0].iterations.numpy()) == 3 * batches
  assert int(trainer.g_optimizers[0].iterations.numpy()) == 3 * batches * 2  # two G steps per D step

  # Rerun with nothing left to do: no new epochs, history untouched.
  history = train_lib.train(config.replace(epochs=3), workdir, data=data, progress=False)
  assert history_epochs(workdir) == [0, 1, 2]


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  data = tiny_data()
  config = Config(**TINY).replace(epochs=3)
  straight = train_lib.train(config, str(tmp_path / "a"), data=data, progress=False)
  train_lib.train(config.replace(epochs=1), str(tmp_path / "b"), data=data, progress=False)
  resumed = train_lib.train(config, str(tmp_path / "b"), data=data, progress=False)
  for a, b in zip(straight, resumed):
    assert a["g_loss"] == pytest.approx(b["g_loss"], rel=1e-5)
    assert a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-5)
  # Inference mode uses BN's moving statistics, which the losses above (training mode) never see.
  import keras
  z = np.random.default_rng(0).uniform(-1, 1, (4, 50)).astype(np.float32)
  outputs = [keras.models.load_model(str(tmp_path / run / "generator.keras"))(z, training=False).numpy()
             for run in ("a", "b")]
  np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)


def test_learning_rate_switch_uses_fresh_adam_instances(tmp_path):
  config = Config(**TINY).replace(epochs=2, lr_decay_epoch=1)
  trainer = train_lib.GANTrainer(config)
  x = tf.constant(synthetic_images(64))
  trainer.train_epoch(x, 0, seed=0)
  assert [int(o.iterations.numpy()) for o in trainer.d_optimizers] == [2, 0]
  trainer.train_epoch(x, 1, seed=0)
  assert [int(o.iterations.numpy()) for o in trainer.d_optimizers] == [2, 2]
  assert [int(o.iterations.numpy()) for o in trainer.g_optimizers] == [4, 4]
  assert [float(o.learning_rate.numpy()) for o in trainer.g_optimizers] == pytest.approx([1e-3, 1e-4])
  assert [o.epsilon for o in trainer.g_optimizers] == [1e-8, 1e-8]


def _seed_order_batch(trainer, x, z):
  """Seed 000's batch written out step by step: the D step runs G(z) itself and, as TF1 ran only
  D's update ops, leaves G's BN statistics as they were; each G step runs G(z) again."""
  from anogan_tf.losses import gan_losses
  g, d = trainer.generator, trainer.discriminator
  g_stats = [tf.identity(v) for v in g.non_trainable_variables]
  with tf.GradientTape() as tape:
    d_loss, _, d_acc = gan_losses(d(x, training=True), d(g(z, training=True), training=True))
  trainer.d_optimizers[0].apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
  for v, value in zip(g.non_trainable_variables, g_stats):
    v.assign(value)
  for _ in range(trainer.config.g_steps):
    with tf.GradientTape() as tape:
      logits = d(g(z, training=True), training=True)
      _, g_loss, _ = gan_losses(tf.zeros_like(logits), logits)
    trainer.g_optimizers[0].apply_gradients(zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))
  return d_loss, d_acc, g_loss


def test_training_batch_equals_the_seeds_order_of_steps():
  # The trainer runs G(z) once for the D step and the first G step; nothing else may change:
  # same losses, weights, BN statistics and Adam moments as the seed's three separate steps.
  config = Config(**TINY)
  ours, seeds = train_lib.GANTrainer(config), train_lib.GANTrainer(config)
  for mine, theirs in zip(ours.generator.weights + ours.discriminator.weights,
                          seeds.generator.weights + seeds.discriminator.weights):
    theirs.assign(mine)
  run_ours = tf.function(lambda x, z: ours._train_batch(x, z, 0))
  run_seeds = tf.function(lambda x, z: _seed_order_batch(seeds, x, z))
  rng = np.random.default_rng(0)
  g_stats = [v.numpy().copy() for v in ours.generator.non_trainable_variables]
  for _ in range(3):
    x = tf.constant(synthetic_images(32, seed=int(rng.integers(1000))))
    z = tf.constant(rng.uniform(-1, 1, (32, 50)).astype(np.float32))
    np.testing.assert_allclose([float(v) for v in run_ours(x, z)], [float(v) for v in run_seeds(x, z)],
                               rtol=1e-6)
  assert not any(np.array_equal(old, v.numpy()) for old, v in zip(g_stats, ours.generator.non_trainable_variables))
  pairs = [(ours.generator.weights + ours.discriminator.weights, seeds.generator.weights + seeds.discriminator.weights),
           (ours.d_optimizers[0].variables, seeds.d_optimizers[0].variables),
           (ours.g_optimizers[0].variables, seeds.g_optimizers[0].variables)]
  for mine, theirs in pairs:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


def test_d_acc_thresholds_logits_at_zero():
  from anogan_tf.losses import gan_losses
  real = tf.constant([[0.2], [-0.1]])  # one right (> 0), one wrong
  fake = tf.constant([[-0.3], [0.4]])  # one right (<= 0), one wrong
  _, _, acc = gan_losses(real, fake)
  assert float(acc) == pytest.approx(0.5)
  d_loss, g_loss, _ = gan_losses(tf.zeros((4, 1)), tf.zeros((4, 1)))
  assert float(d_loss) == pytest.approx(2 * np.log(2), rel=1e-6)
  assert float(g_loss) == pytest.approx(np.log(2), rel=1e-6)
