"""DCGAN training on normal images, seed 000's schedule, resumable.

Per batch: one discriminator step, then `g_steps` (2) generator steps on the same z batch.
Adam at `lr` until epoch `lr_decay_epoch`, then fresh Adam instances at `lr_after_decay`
(the seed switches to separately built TF1 optimizers, so the moments restart).
A whole epoch runs as one compiled function: no host round trip per batch.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import shutil
import time
from typing import List, Optional

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from anogan_tf import losses, plots
from anogan_tf.config import Config
from anogan_tf.data import load_one_class
from anogan_tf.errors import AnoganError
from anogan_tf.io_utils import atomic_path, write_text
from anogan_tf.networks import build_networks

HISTORY_FIELDS = ("epoch", "g_loss", "d_loss", "d_acc", "seconds")
# Settings that do not change what training computes: a workdir may be resumed with new values.
NOT_TRAINING_FIELDS = {"epochs", "data_dir", "test_examples", "lam", "map_steps", "map_lrs",
                       "map_reduction", "z_init", "z_init_std", "map_batch_size"}


def sample_z(rng: np.random.Generator, n: int, config: Config) -> np.ndarray:
  shape = (n, config.latent_dim)
  if config.z_prior == "normal":
    return rng.standard_normal(shape).astype(np.float32)
  return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


class GANTrainer(tf.Module):
  """Holds G, D, the four Adam instances and the epoch counter; `train_epoch` is compiled."""

  def __init__(self, config: Config, generator=None, discriminator=None):
    super().__init__(name="gan_trainer")
    self.config = config
    if generator is None:
      generator, discriminator = build_networks(config)
    self.generator, self.discriminator = generator, discriminator

    def adam(lr):
      return keras.optimizers.Adam(learning_rate=lr, beta_1=config.adam_beta_1,
                                   beta_2=config.adam_beta_2, epsilon=config.adam_epsilon)

    self.d_optimizers = [adam(config.lr), adam(config.lr_after_decay)]
    self.g_optimizers = [adam(config.lr), adam(config.lr_after_decay)]
    for opt in self.d_optimizers:  # built now: tf.function may not create variables later
      opt.build(self.discriminator.trainable_variables)
    for opt in self.g_optimizers:
      opt.build(self.generator.trainable_variables)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    signature = [tf.TensorSpec((None,) + config.image_shape, tf.float32),
                 tf.TensorSpec((None,), tf.int32),
                 tf.TensorSpec((None, config.latent_dim), tf.float32)]
    self._epoch_fns = [tf.function(functools.partial(self._train_epoch, phase), input_signature=signature)
                       for phase in (0, 1)]  # one trace per learning-rate phase

  def checkpoint(self) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(generator=self.generator, discriminator=self.discriminator,
                               d_optimizer=self.d_optimizers[0], g_optimizer=self.g_optimizers[0],
                               d_optimizer_after_decay=self.d_optimizers[1],
                               g_optimizer_after_decay=self.g_optimizers[1], epoch=self.epoch)

  def phase(self, epoch: int) -> int:
    decay = self.config.lr_decay_epoch
    return int(decay > 0 and epoch >= decay)

  @staticmethod
  def _restore(variables, values):
    for variable, value in zip(variables, values):
      variable.assign(value)

  def _d_step(self, x, z, optimizer):
    g, d = self.generator, self.discriminator
    # TF1 ran only D's update ops with D's optimizer: G's BN statistics stay as they were.
    g_stats = [tf.identity(v) for v in g.non_trainable_variables]
    with tf.GradientTape() as tape:
      fake = g(z, training=True)
      d_loss, _, d_acc = losses.gan_losses(d(x, training=True), d(fake, training=True))
    optimizer.apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
    self._restore(g.non_trainable_variables, g_stats)
    return d_loss, d_acc

  def _g_step(self, z, optimizer):
    g, d = self.generator, self.discriminator
    d_stats = [tf.identity(v) for v in d.non_trainable_variables]  # likewise D's, in G's step
    with tf.GradientTape() as tape:
      fake_logits = d(g(z, training=True), training=True)
      _, g_loss, _ = losses.gan_losses(tf.zeros_like(fake_logits), fake_logits)
    optimizer.apply_gradients(zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))
    self._restore(d.non_trainable_variables, d_stats)
    return g_loss

  def _train_epoch(self, phase, x_all, permutation, z_all):
    """One epoch over x_all[permutation] in batches; returns the mean g_loss, d_loss, d_acc."""
    n = tf.shape(permutation)[0]
    batch = self.config.batch_size
    batches = (n + batch - 1) // batch
    totals = tf.zeros(3)
    for b in tf.range(batches):
      lo, hi = b * batch, tf.minimum((b + 1) * batch, n)
      x = tf.gather(x_all, permutation[lo:hi])
      z = z_all[lo:hi]
      d_loss, d_acc = self._d_step(x, z, self.d_optimizers[phase])
      g_loss = tf.constant(0.0)
      for _ in range(self.config.g_steps):  # the seed's G loss is the last step's
        g_loss = self._g_step(z, self.g_optimizers[phase])
      totals += tf.stack([g_loss, d_loss, d_acc])
    return totals / tf.cast(batches, tf.float32)

  def train_epoch(self, x_all, epoch: int, seed: int) -> dict:
    # Shuffling and z are drawn from (seed, epoch): resuming at an epoch redraws them exactly.
    rng = np.random.default_rng([seed, epoch])
    permutation = rng.permutation(len(x_all)).astype(np.int32)
    z = sample_z(rng, len(x_all), self.config)
    means = self._epoch_fns[self.phase(epoch)](x_all, tf.constant(permutation), tf.constant(z)).numpy()
    return dict(zip(("g_loss", "d_loss", "d_acc"), (float(v) for v in means)))


def read_history(path: str) -> List[dict]:
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    rows = []
    for row in csv.DictReader(f):
      try:
        rows.append({"epoch": int(row["epoch"]), **{k: float(row[k]) for k in HISTORY_FIELDS[1:]}})
      except (KeyError, TypeError, ValueError):
        break  # a torn last line from a crash: drop it and everything after
    return rows


def write_history(path: str, rows: List[dict]) -> None:
  lines = [",".join(HISTORY_FIELDS)] + [",".join(str(row[k]) for k in HISTORY_FIELDS) for row in rows]
  write_text(path, "\n".join(lines) + "\n")


def append_history(path: str, row: dict) -> None:
  with open(path, "a") as f:
    f.write(",".join(str(row[k]) for k in HISTORY_FIELDS) + "\n")
    f.flush()
    os.fsync(f.fileno())


def prepare_workdir(config: Config, workdir: str, overwrite: bool = False) -> None:
  """Creates the workdir, or checks that an existing one was trained with the same settings."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test{os.getpid()}")
    open(probe, "w").close()
    os.remove(probe)
  except OSError as e:
    raise AnoganError(f"cannot write to workdir {workdir} ({e.strerror}); choose a writable --workdir") from None
  flags_path = os.path.join(workdir, "flags.txt")
  if os.path.exists(flags_path) and not overwrite:
    with open(flags_path) as f:
      old = Config.from_flagfile_text(f.read())
    changed = [f.name for f in dataclasses.fields(Config)
               if f.name not in NOT_TRAINING_FIELDS and getattr(old, f.name) != getattr(config, f.name)]
    if changed:
      name = changed[0]
      raise AnoganError(f"workdir {workdir} was trained with other settings (--{name}={getattr(old, name)}, "
                        f"now {getattr(config, name)}); use another --workdir or pass --overwrite to start over")
  if overwrite:
    for name in ("checkpoints", "samples", "tensorboard", "eval"):
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in ("history.csv", "generator.keras", "discriminator.keras", "loss.png"):
      if os.path.exists(os.path.join(workdir, name)):
        os.remove(os.path.join(workdir, name))
  write_text(flags_path, config.to_flagfile())


def train(config: Config, workdir: str, overwrite: bool = False, data=None,
          progress: bool = True) -> List[dict]:
  """Trains (or resumes) a DCGAN in `workdir`; returns the history, one dict per epoch."""
  prepare_workdir(config, workdir, overwrite)
  data = data if data is not None else load_one_class(config)
  x_train = tf.constant(data.x_train)

  keras.utils.set_random_seed(config.seed)
  trainer = GANTrainer(config)
  manager = tf.train.CheckpointManager(trainer.checkpoint(), os.path.join(workdir, "checkpoints"),
                                       max_to_keep=2)
  if manager.latest_checkpoint:
    try:
      trainer.checkpoint().restore(manager.latest_checkpoint).assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
      raise AnoganError(f"checkpoint {manager.latest_checkpoint} cannot be read ({type(e).__name__}); "
                        "delete the workdir's checkpoints/ folder or pass --overwrite to start over") from None
  start = int(trainer.epoch.numpy())

  history_path = os.path.join(workdir, "history.csv")
  history = [row for row in read_history(history_path) if row["epoch"] < start]
  write_history(history_path, history)  # repairs what a crash left after the last checkpoint
  os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  fixed_z = sample_z(np.random.default_rng([config.seed, 2**31 - 1]), 64, config)
  writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  bar = tqdm(range(start, config.epochs), initial=start, total=config.epochs, desc="train",
             disable=not progress, dynamic_ncols=True)
  for epoch in bar:
    began = time.perf_counter()
    metrics = trainer.train_epoch(x_train, epoch, config.seed)
    row = {"epoch": epoch, **metrics, "seconds": round(time.perf_counter() - began, 4)}
    samples = trainer.generator(fixed_z, training=False).numpy()
    plots.save_grid(samples, os.path.join(workdir, "samples", f"epoch_{epoch + 1:04d}.png"))
    with writer.as_default(step=epoch + 1):
      for key in ("g_loss", "d_loss", "d_acc"):
        tf.summary.scalar(key, metrics[key])
    append_history(history_path, row)
    history.append(row)
    trainer.epoch.assign(epoch + 1)
    manager.save(checkpoint_number=epoch + 1)
    bar.set_postfix(g_loss=f"{metrics['g_loss']:.4f}", d_loss=f"{metrics['d_loss']:.4f}",
                    d_acc=f"{metrics['d_acc']:.4f}")
  writer.flush()
  if history:
    plots.loss_plot(history, os.path.join(workdir, "loss.png"))
  for model, name in ((trainer.generator, "generator"), (trainer.discriminator, "discriminator")):
    with atomic_path(os.path.join(workdir, f"{name}.keras")) as tmp:
      model.save(tmp)
  return history
