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
import glob
import math
import os
import re
import shutil
import time
from typing import List, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from anogan_tf import losses, plots
from anogan_tf.config import Config
from anogan_tf.data import load_one_class
from anogan_tf.evaluate_lib import lock_eval
from anogan_tf.errors import AnoganError
from anogan_tf.faults import fault_point
from anogan_tf.io_utils import DirectoryLock, atomic_path, write_text
from anogan_tf.networks import build_networks

HISTORY_FIELDS = ("epoch", "g_loss", "d_loss", "d_acc", "seconds")
# Settings that do not change what training computes: a workdir may be resumed with new values.
# (deterministic changes only the order of float additions, not the computation.)
NOT_TRAINING_FIELDS = {"epochs", "data_dir", "test_examples", "lam", "map_steps", "map_lrs",
                       "map_reduction", "z_init", "z_init_std", "map_batch_size", "deterministic", "eval_split",
                       "vae_score", "initial_z", "feature_layer"}
CHECKPOINTS_KEPT = 2
# A discriminator whose loss stays below COLLAPSE_D_LOSS for COLLAPSE_EPOCHS epochs in a row
# wins outright: the generator's gradients vanish and training makes no more progress.
COLLAPSE_D_LOSS = 1e-3
COLLAPSE_EPOCHS = 5


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
    # The models keep their layers in a Python list, which tf.train.Checkpoint does not follow:
    # their weights are listed explicitly, else BN's moving statistics (held by no optimizer)
    # would be lost on every resume.
    return tf.train.Checkpoint(generator=self.generator, discriminator=self.discriminator,
                               generator_weights=list(self.generator.weights),
                               discriminator_weights=list(self.discriminator.weights),
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

  @staticmethod
  def bn_statistics(model) -> list:
    """The moving mean and variance of every BatchNormalization layer in `model`: the state a
    training-mode forward pass updates. (Not `non_trainable_variables`: in Keras 3 those also hold
    Dropout's random-generator state, which must move on at every pass.)"""
    return [v for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) for v in (layer.moving_mean, layer.moving_variance)]

  @staticmethod
  def random_states(model) -> list:
    """The state of every random-number generator in `model` (Dropout's SeedGenerator): the
    variables Keras lists in `variables` but not in `weights`."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]

  def reseed_dropout(self, rng: np.random.Generator) -> None:
    """Restarts every dropout generator of G and D from a seed drawn from `rng`."""
    for state in self.random_states(self.generator) + self.random_states(self.discriminator):
      state.assign(np.array([rng.integers(0, 2**31 - 2), 0], dtype=state.dtype))

  def _d_step(self, x, fake, optimizer):
    """D's update on real x and fake G(z), computed by the caller (D's tape does not see G).

    `d_step="joint"` (seed 000): one update on the summed loss. `"separate"` (seed 002): one
    update on the real batch, then one on the fake batch, which the updated D sees.
    """
    d = self.discriminator
    if self.config.d_step == "joint":
      with tf.GradientTape() as tape:
        d_loss, _, d_acc = losses.gan_losses(d(x, training=True), d(fake, training=True))
      optimizer.apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
      return d_loss, d_acc
    parts, logits = [], []
    for images, label in ((x, 1.0), (fake, 0.0)):
      with tf.GradientTape() as tape:
        batch_logits = d(images, training=True)
        loss = losses.discriminator_loss_on(batch_logits, label)
      optimizer.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))
      parts.append(loss)
      logits.append(batch_logits)
    _, _, d_acc = losses.gan_losses(*logits)
    return parts[0] + parts[1], d_acc

  def _g_step(self, z, optimizer, recorded=None):
    """G's update on z; `recorded` is (tape, G(z)) when G's forward pass is already on a tape."""
    g, d = self.generator, self.discriminator
    d_stats = [tf.identity(v) for v in self.bn_statistics(d)]  # TF1 ran only G's update ops
    if recorded is None:
      tape = tf.GradientTape()
      with tape:
        fake = g(z, training=True)
    else:
      tape, fake = recorded
    with tape:  # resumes recording on the tape that holds G's forward pass
      fake_logits = d(fake, training=True)
      _, g_loss, _ = losses.gan_losses(tf.zeros_like(fake_logits), fake_logits)
    optimizer.apply_gradients(zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))
    self._restore(self.bn_statistics(d), d_stats)
    return g_loss

  def _train_batch(self, x, z, phase):
    """Seed 000's batch: one D step, then `g_steps` G steps on the same z; returns the losses.

    G does not change during the D step, so G(z) in the D step and in the first G step are the
    same tensor: it is computed once, on the tape of that G step. G's BN statistics update in
    that forward pass, once, as in the seed's first G step (the seed's D step ran only D's update
    ops, so it left them alone; with no G step they are put back).
    """
    g = self.generator
    if self.config.d_fakes_mode == "inference":  # seed 002: generator.predict, BN on moving statistics
      recorded = None
      d_fake = g(z, training=False)
    else:
      g_stats = [tf.identity(v) for v in self.bn_statistics(g)]  # put back if no G step runs
      tape = tf.GradientTape()
      with tape:
        d_fake = g(z, training=True)
      recorded = (tape, d_fake)
    d_loss, d_acc = self._d_step(x, d_fake, self.d_optimizers[phase])
    g_loss = tf.constant(0.0)
    for step in range(self.config.g_steps):  # the seed's G loss is the last step's
      g_loss = self._g_step(z, self.g_optimizers[phase], recorded=recorded if step == 0 else None)
    if self.config.g_steps == 0 and recorded is not None:
      self._restore(self.bn_statistics(g), g_stats)
    return d_loss, d_acc, g_loss

  def _train_epoch(self, phase, x_all, permutation, z_all):
    """One epoch over x_all[permutation] in batches; returns the mean g_loss, d_loss, d_acc."""
    n = tf.shape(permutation)[0]
    batch = self.config.batch_size
    batches = (n + batch - 1) // batch
    totals = tf.zeros(3)
    for b in tf.range(batches):
      lo, hi = b * batch, tf.minimum((b + 1) * batch, n)
      d_loss, d_acc, g_loss = self._train_batch(tf.gather(x_all, permutation[lo:hi]), z_all[lo:hi], phase)
      totals += tf.stack([g_loss, d_loss, d_acc])
    return totals / tf.cast(batches, tf.float32)

  def train_epoch(self, x_all, epoch: int, seed: int) -> dict:
    # Shuffling, z and the dropout masks are drawn from (seed, epoch): resuming at an epoch
    # redraws them exactly, with no random state in the checkpoint.
    rng = np.random.default_rng([seed, epoch])
    permutation = rng.permutation(len(x_all)).astype(np.int32)
    z = sample_z(rng, len(x_all), self.config)
    self.reseed_dropout(rng)  # drawn after z: the permutation and z are those of before
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


def _history_writer(f):
  return csv.DictWriter(f, HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")


def write_history(path: str, rows: List[dict]) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline="") as f:
      writer = _history_writer(f)
      writer.writeheader()
      writer.writerows(rows)


def append_history(path: str, row: dict) -> None:
  with open(path, "a", newline="") as f:
    _history_writer(f).writerow(row)
    f.flush()
    os.fsync(f.fileno())


# --- checkpoints: TF's own files, committed by an atomic rewrite of the `checkpoint` state file

def _checkpoint_number(path: str) -> int:
  match = re.search(r"ckpt-(\d+)$", path)
  return int(match.group(1)) if match else -1


def latest_checkpoint(directory: str) -> Optional[str]:
  """The last committed checkpoint prefix in `directory`, or None if training never saved one.

  Unlike tf.train.latest_checkpoint, a damaged or dangling state file is an error, not None:
  silently starting over would throw the run's history away.
  """
  state = os.path.join(directory, "checkpoint")
  if not os.path.exists(state):
    return None
  fix = (f"delete {directory} to train from scratch in this workdir, or pass --overwrite to start over")
  try:
    with open(state) as f:
      match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', f.read(), re.MULTILINE)
  except (OSError, UnicodeDecodeError) as e:
    raise AnoganError(f"checkpoint state {state} cannot be read ({type(e).__name__}); {fix}") from None
  if not match:
    raise AnoganError(f"checkpoint state {state} is damaged (no model_checkpoint_path); {fix}")
  path = match.group(1)
  path = path if os.path.isabs(path) else os.path.join(directory, path)
  if not os.path.exists(path + ".index"):
    raise AnoganError(f"checkpoint {path} named by {state} is missing; {fix}")
  return path


def save_checkpoint(checkpoint: tf.train.Checkpoint, directory: str, number: int) -> str:
  """Writes ckpt-<number>, then commits it by atomically rewriting the state file.

  A kill before the commit leaves the previous checkpoint as the latest; the half-written
  files are overwritten by the next save of that number. Keeps the last CHECKPOINTS_KEPT.
  """
  os.makedirs(directory, exist_ok=True)
  checkpoint.save_counter.assign(number)  # as CheckpointManager does; restore() expects it
  path = checkpoint.write(os.path.join(directory, f"ckpt-{number}"))
  fault_point("checkpoint_written", number - 1)
  numbers = sorted({_checkpoint_number(p[:-len(".index")]) for p in glob.glob(os.path.join(directory, "ckpt-*.index"))}
                   | {number})
  kept = [n for n in numbers if n <= number][-CHECKPOINTS_KEPT:]
  lines = [f'model_checkpoint_path: "ckpt-{number}"'] + [f'all_model_checkpoint_paths: "ckpt-{n}"' for n in kept]
  write_text(os.path.join(directory, "checkpoint"), "\n".join(lines) + "\n")
  for n in numbers:
    if n not in kept:
      for stale in glob.glob(os.path.join(directory, f"ckpt-{n}.*")) + glob.glob(os.path.join(directory, f"ckpt-{n}_temp*")):
        shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)
  return path


def restore_checkpoint(trainer: "GANTrainer", directory: str) -> int:
  """Restores the latest checkpoint into `trainer`; returns the next epoch to train (0: none)."""
  path = latest_checkpoint(directory)
  if path is None:
    return 0
  try:
    trainer.checkpoint().restore(path).assert_existing_objects_matched()
  except Exception as e:  # TF reports damage as OpError, IndexError ("Read less bytes"), ValueError...
    raise AnoganError(f"checkpoint {path} cannot be read ({type(e).__name__}: damaged or truncated); "
                      f"delete {directory} to train from scratch in this workdir, or pass --overwrite "
                      "to start over") from None
  return int(trainer.epoch.numpy())


# --- the workdir: checked without writing anything, then written only once everything is known good

def check_workdir(config: Config, workdir: str, overwrite: bool = False) -> None:
  """Read-only checks: the workdir can be created here, and an existing one matches `config`."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise AnoganError(f"workdir {workdir} is a file, not a folder; choose another --workdir")
  parent = os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise AnoganError(f"cannot create workdir {workdir}: {parent} is a file, not a folder; choose another --workdir")
  flags_path = os.path.join(workdir, "flags.txt")
  if os.path.exists(flags_path) and not overwrite:
    try:
      with open(flags_path) as f:
        old = Config.from_flagfile_text(f.read())
    except (OSError, UnicodeDecodeError, AnoganError) as e:
      raise AnoganError(f"{flags_path} is damaged ({e if isinstance(e, AnoganError) else type(e).__name__}); "
                        "restore it, or pass --overwrite to start over") from None
    changed = [f.name for f in dataclasses.fields(Config)
               if f.name not in NOT_TRAINING_FIELDS and getattr(old, f.name) != getattr(config, f.name)]
    if changed:
      name = changed[0]
      raise AnoganError(f"workdir {workdir} was trained with other settings (--{name}={getattr(old, name)}, "
                        f"now {getattr(config, name)}); use another --workdir or pass --overwrite to start over")


def lock_workdir(workdir: str) -> DirectoryLock:
  return DirectoryLock(workdir, f"another train is running on {workdir}; wait for it to finish "
                                "(or stop it) before training there again, or use another --workdir")


def _same_folder(fd: int, path: str) -> bool:
  try:
    held, now = os.fstat(fd), os.stat(path)
  except OSError:
    return False
  return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def create_and_lock_workdir(workdir: str):
  """Creates the workdir if it does not exist and locks it, before anything in it is checked,
  cleaned or written; returns (lock, the folders created here, outermost first).

  A run that fails removes the folders it created while it still holds the lock (they are empty
  unless it wrote), so a second run may lock a folder that is gone by then: that lock is dropped
  and taken again on the new folder.
  """
  for _ in range(10):
    missing, parent = [], os.path.abspath(workdir)
    while not os.path.exists(parent):
      missing.insert(0, parent)
      parent = os.path.dirname(parent)
    try:
      os.makedirs(workdir, exist_ok=True)
      lock = lock_workdir(workdir)
    except FileNotFoundError:  # removed between makedirs and the lock: again
      continue
    except OSError as e:
      raise AnoganError(f"cannot write to workdir {workdir} ({e.strerror}); choose a writable --workdir") from None
    if lock.fd is None or _same_folder(lock.fd, workdir):
      return lock, missing
    lock.release()
  raise AnoganError(f"workdir {workdir} keeps being removed while this run starts; is another run "
                    "failing on it? Try again, or use another --workdir")


def remove_created_folders(created: List[str]) -> None:
  """Removes the folders create_and_lock_workdir made, innermost first, as long as they are empty."""
  for folder in reversed(created):
    try:
      os.rmdir(folder)
    except OSError:
      return


def evaluation_folders(workdir: str) -> List[str]:
  """eval/ and the eval_*/ folders of `evaluate --eval_dir` inside the workdir."""
  return sorted(os.path.join(workdir, name) for name in os.listdir(workdir)
                if (name == "eval" or name.startswith("eval_")) and os.path.isdir(os.path.join(workdir, name)))


def lock_evaluations(workdir: str) -> List[DirectoryLock]:
  """Evaluate's lock on each evaluation folder of the workdir, for deleting them (--overwrite)."""
  locks = []
  try:
    for folder in evaluation_folders(workdir):
      try:
        locks.append(lock_eval(workdir, folder))
      except AnoganError:
        raise AnoganError(f"an evaluate is running on {workdir} (writing {folder}); wait for it to finish "
                          "(or stop it) before training there with --overwrite") from None
      except OSError as e:
        raise AnoganError(f"cannot clear {folder} ({e.strerror}); remove it yourself, then train again "
                          "with --overwrite") from None
  except BaseException:
    for lock in locks:
      lock.release()
    raise
  return locks


def prepare_workdir(config: Config, workdir: str, overwrite: bool = False) -> None:
  """Checks that the workdir can be written (and, unless `overwrite`, that it was trained with
  the same settings), clears what a killed run left half-written, clears a previous run with
  `overwrite` (holding evaluate's lock on eval/ and eval_*/), and writes flags.txt.

  The first step that writes to the workdir: call it only holding the workdir's lock
  (create_and_lock_workdir), once everything that can fail on bad input has been checked.
  """
  check_workdir(config, workdir, overwrite)
  eval_locks = lock_evaluations(workdir) if overwrite else []
  try:
    try:
      os.makedirs(workdir, exist_ok=True)
      probe = os.path.join(workdir, f".write_test{os.getpid()}")
      open(probe, "w").close()
      os.remove(probe)
    except OSError as e:
      raise AnoganError(f"cannot write to workdir {workdir} ({e.strerror}); choose a writable --workdir") from None
    remove_stale_temporaries(workdir)
    if overwrite:
      for path in [os.path.join(workdir, name) for name in ("checkpoints", "samples", "tensorboard")] + \
                  evaluation_folders(workdir):
        shutil.rmtree(path, ignore_errors=True)
      for name in ("history.csv", "generator.keras", "discriminator.keras", "loss.png"):
        if os.path.exists(os.path.join(workdir, name)):
          os.remove(os.path.join(workdir, name))
    write_text(os.path.join(workdir, "flags.txt"), config.to_flagfile())
  finally:
    for lock in eval_locks:
      lock.release()


_TEMPORARY = re.compile(r"^\..+\.tmp\d+(\.\w+)?$|^\.write_test\d+$|^ckpt-\d+_temp")


def remove_stale_temporaries(workdir: str) -> None:
  """Deletes what a killed training left half-written (atomic_path's .*.tmp<pid> files, TF's
  ckpt-N_temp folders). Call it only while holding the workdir's lock; eval/ is evaluate's."""
  for folder in (workdir, os.path.join(workdir, "samples"), os.path.join(workdir, "checkpoints")):
    if not os.path.isdir(folder):
      continue
    for name in os.listdir(folder):
      if _TEMPORARY.match(name):
        path = os.path.join(folder, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def collapse_warning(history: List[dict]) -> Optional[str]:
  """A warning when d_loss stayed below COLLAPSE_D_LOSS for the last COLLAPSE_EPOCHS epochs
  (reported once per streak: exactly when the streak reaches that length), else None."""
  streak = 0
  for row in reversed(history):
    if row["d_loss"] >= COLLAPSE_D_LOSS:
      break
    streak += 1
  if streak != COLLAPSE_EPOCHS:
    return None
  first = history[-streak]["epoch"] + 1
  return (f"the discriminator has collapsed: d_loss < {COLLAPSE_D_LOSS:g} for {streak} epochs in a row "
          f"(epochs {first}-{history[-1]['epoch'] + 1}), so the generator gets no useful gradient; "
          "look at the samples, and if they stopped improving restart with --overwrite and e.g. a lower "
          "--lr, --d_dropout or --g_steps")


def enable_determinism(config: Config) -> None:
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()


def train(config: Config, workdir: str, overwrite: bool = False, data=None,
          progress: bool = True) -> List[dict]:
  """Trains (or resumes) a DCGAN in `workdir`; returns the history, one dict per epoch.

  The workdir is locked first (created if new): a second train on it fails at once. Everything
  that can fail on bad input (settings, data, a damaged checkpoint) is checked before the workdir
  is written, so bad input leaves an existing workdir as it was and leaves no new one behind.
  A NaN or inf loss stops training with AnoganError, keeping the last good checkpoint.
  """
  check_workdir(config, workdir, overwrite)  # read-only: a bad --workdir fails before anything is made
  lock, created = create_and_lock_workdir(workdir)
  try:
    check_workdir(config, workdir, overwrite)  # again, locked: another run may have trained there since
    return _train(config, workdir, overwrite, data, progress)
  except BaseException:
    remove_created_folders(created)  # still locked: nobody else is using them
    raise
  finally:
    lock.release()


def _train(config, workdir, overwrite, data, progress) -> List[dict]:
  data = data if data is not None else load_one_class(config)
  if len(data.x_train) == 0:
    raise AnoganError("no training images; check --normal_classes and --train_examples")
  x_train = tf.constant(data.x_train)
  enable_determinism(config)
  keras.utils.set_random_seed(config.seed)
  trainer = GANTrainer(config)
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  start = 0 if overwrite else restore_checkpoint(trainer, checkpoint_dir)

  # --- nothing above wrote to the workdir
  prepare_workdir(config, workdir, overwrite)
  history_path = os.path.join(workdir, "history.csv")
  history = [row for row in read_history(history_path) if row["epoch"] < start]
  write_history(history_path, history)  # repairs what a crash left after the last checkpoint
  os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  fixed_z = sample_z(np.random.default_rng([config.seed, 2**31 - 1]), 64, config)
  writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  bar = tqdm(range(start, config.epochs), initial=start, total=config.epochs, desc="train",
             disable=not progress, dynamic_ncols=True)
  try:
    for epoch in bar:
      began = time.perf_counter()
      metrics = trainer.train_epoch(x_train, epoch, config.seed)
      if fault_point("loss", epoch) == "nan":
        metrics["g_loss"] = float("nan")
      fault_point("epoch", epoch)
      bad = [f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v)]
      if bad:  # nothing of this epoch is kept: its weights are already poisoned
        kept = (f"kept the checkpoint of epoch {epoch}: rerun with --epochs={epoch} to export its models, or"
                if epoch > 0 else "no checkpoint was saved:")
        raise AnoganError(f"training diverged at epoch {epoch + 1} ({', '.join(bad)}); {kept} start over "
                          "with --overwrite and a lower --lr")
      row = {"epoch": epoch, **metrics, "seconds": round(time.perf_counter() - began, 4)}
      samples = trainer.generator(fixed_z, training=False).numpy()
      plots.save_grid(samples, os.path.join(workdir, "samples", f"epoch_{epoch + 1:04d}.png"))
      with writer.as_default(step=epoch + 1):
        for key in ("g_loss", "d_loss", "d_acc"):
          tf.summary.scalar(key, metrics[key])
      append_history(history_path, row)  # before the checkpoint: a resume drops rows past it
      history.append(row)
      fault_point("history", epoch)
      trainer.epoch.assign(epoch + 1)
      save_checkpoint(trainer.checkpoint(), checkpoint_dir, epoch + 1)
      warning = collapse_warning(history)
      if warning:
        logging.warning(warning)
      bar.set_postfix(g_loss=f"{metrics['g_loss']:.4f}", d_loss=f"{metrics['d_loss']:.4f}",
                      d_acc=f"{metrics['d_acc']:.4f}")
  finally:
    bar.close()
    writer.close()
  if history:
    plots.loss_plot(history, os.path.join(workdir, "loss.png"))
  for model, name in ((trainer.generator, "generator"), (trainer.discriminator, "discriminator")):
    with atomic_path(os.path.join(workdir, f"{name}.keras")) as tmp:
      model.save(tmp)
    fault_point("export")
  return history
