"""The training driver, the same for every model family (anogan_tf/models/): resumable epochs.

A family supplies its networks, its compiled step(s) with their optimizers and what else to
checkpoint (models/base.py); the driver owns the rest: the workdir and its lock, shuffling and
noise drawn from (seed, epoch), the epoch loop as one compiled function per learning-rate phase
(no host round trip per batch), checkpoints and resume, history.csv, TensorBoard, sample grids,
NaN and collapse checks, and the exported <network>.keras files.

Images in memory (the .npz datasets) go to the compiled epoch as one tensor, gathered batch by
batch in the epoch's permutation. A folder dataset's images (folder_data.ImageFiles) are streamed
instead: a tf.data pipeline reads, decodes and resizes them in that same permutation, with the
same noise rows, and the compiled epoch (`stream_loop`, one trace per learning-rate phase) runs
the same steps over its batches; so a folder larger than memory trains, and resumes exactly.

AnoGAN's warm-start encoder (models/anogan.py) is a second stage of the same run: after the GAN's
`epochs`, `encoder_epochs` epochs of E with G and D frozen (`EncoderDriver`), checkpointed apart
in checkpoints/encoder/ (the GAN's checkpoints keep their layout and are not written by this
stage), with its own encoder_history.csv, encoder_loss.png and samples/encoder_epoch_*.png
(training images over G(E(x))), exported as encoder.keras. Resumable and kill-safe like the GAN.
E's checkpoint records the GAN epoch it was trained against: if the GAN trains further, E starts
over on the new G. Adding --encoder_epochs (or more of them) to a finished GAN trains only E.
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
from typing import List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from anogan_tf import distribute, models, plots, summaries, threshold
from anogan_tf.config import Config, flag_text
from anogan_tf.data import load_one_class
from anogan_tf.evaluate_lib import lock_eval
from anogan_tf.errors import AnoganError
from anogan_tf.faults import fault_point
from anogan_tf.folder_data import PICTURE_ERRORS, ImageFiles, resolve_image_shape
from anogan_tf.io_utils import DirectoryLock, atomic_path, check_folder_can_be_made, write_text
from anogan_tf.models import anogan
from anogan_tf.networks import random_states

# Settings that do not change what training computes: a workdir may be resumed with new values.
# (deterministic changes only the order of float additions, not the computation.)
# encoder_epochs is extendable like epochs: adding it to a finished anogan workdir trains only E.
NOT_TRAINING_FIELDS = {"epochs", "encoder_epochs", "data_dir", "test_examples", "lam", "map_steps", "map_lrs",
                       "map_reduction", "z_init", "z_init_std", "map_batch_size", "deterministic", "eval_split",
                       "vae_score", "initial_z", "feature_layer", "map_restarts", "ink_power", "map_seed",
                       "strategy"}  # distribute: a workdir resumes on other devices (same checkpoint format)
NOT_TRAINING_FIELDS |= {"threshold_percentile"}  # a rerun applies it to the stored held-out scores
CHECKPOINTS_KEPT = 2
# A discriminator whose loss stays below COLLAPSE_D_LOSS for COLLAPSE_EPOCHS epochs in a row
# wins outright: the generator's gradients vanish and training makes no more progress.
COLLAPSE_D_LOSS = 1e-3
COLLAPSE_EPOCHS = 5
SAMPLE_SEED = 2**31 - 1  # the fixed noise of the sample grids: drawn from (seed, SAMPLE_SEED)
# The warm-start encoder's random streams: its initial weights from (seed, ENCODER_SEED), the
# shuffling of its epoch e from (seed, ENCODER_SEED, e); apart from the GAN's (seed, e).
ENCODER_SEED = 2**31 - 2
# Settings only the warm-start encoder's training reads (anogan): free to change on a workdir
# until its encoder training has begun, refused after (its checkpoints would not match them).
ENCODER_FIELDS = ("kappa", "e_filters", "e_strides", "e_batchnorm", "feature_layer")
ENCODER_CHECKPOINTS = os.path.join("checkpoints", "encoder")
ENCODER_HISTORY, ENCODER_LOSS_PLOT = "encoder_history.csv", "encoder_loss.png"
ENCODER_SAMPLES = 32  # training images shown over G(E(x)) in samples/encoder_epoch_*.png


def history_fields(loss_names: Sequence[str]) -> tuple:
  """history.csv's columns: epoch, the family's losses, seconds (anogan: epoch, g_loss, d_loss,
  d_acc, seconds)."""
  return ("epoch",) + tuple(loss_names) + ("seconds",)


class Driver:
  """One family's networks and trainer (`config.model`), the epoch counter, and the compiled
  epoch loop; `train_epoch` runs one epoch, `checkpoint()` lists what a resume needs.

  With a tf.distribute `strategy` (distribute.make_strategy; None: one device) the networks and
  optimizers live under its scope and each batch is split across its replicas
  (distribute.replicated_step); the checkpoint lists the same objects either way."""

  def __init__(self, config: Config, strategy: Optional[tf.distribute.Strategy] = None):
    self.config = config
    self.strategy = strategy
    self.family = models.family(config.model)
    with distribute.scope(strategy):
      self.networks = self.family.build_networks(config)
      self.trainer = self.family.make_trainer(config, self.networks)
    if strategy is not None:
      distribute.average_gradients(strategy, [item for item in self.trainer.checkpoint_items().values()
                                              if isinstance(item, keras.optimizers.Optimizer)])
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self._epoch_functions = {}
    self._stream_functions = {}

  def checkpoint(self) -> tf.train.Checkpoint:
    # The networks keep their layers in Python lists, which tf.train.Checkpoint does not follow:
    # their weights are listed explicitly, else BN's moving statistics (held by no optimizer)
    # would be lost on every resume. anogan: generator, discriminator, generator_weights,
    # discriminator_weights, its four optimizers and epoch, as before the families existed.
    items = {}
    for name in self.family.NETWORKS:
      items[name] = self.networks[name]
      items[f"{name}_weights"] = list(self.networks[name].weights)
    extra = self.trainer.checkpoint_items()
    clash = sorted(set(extra) & (set(items) | {"epoch"}))
    if clash:
      raise ValueError(f"{self.family.NAME}: checkpoint_items() reuses the driver's names {clash}")
    return tf.train.Checkpoint(**items, **extra, epoch=self.epoch)

  def epoch_function(self, phase: int, noise_shape: tuple):
    """The compiled epoch of learning-rate phase `phase` for noise rows of `noise_shape`: one
    trace per phase for the whole run."""
    key = (phase, tuple(noise_shape))
    if key not in self._epoch_functions:
      signature = [tf.TensorSpec((None,) + self.config.image_shape, tf.float32),
                   tf.TensorSpec((None,), tf.int32),
                   tf.TensorSpec((None,) + tuple(noise_shape), tf.float32)]
      self._epoch_functions[key] = tf.function(functools.partial(self._train_epoch, phase),
                                               input_signature=signature)
    return self._epoch_functions[key]

  def _train_epoch(self, phase, x_all, permutation, noise_all):
    if self.strategy is None:
      return epoch_loop(self.trainer, self.config.batch_size, phase, x_all, permutation, noise_all)
    return epoch_loop(self.trainer, self.config.batch_size, phase, x_all, permutation, noise_all,
                      step=distribute.replicated_step(self.strategy, self.trainer.train_step))

  def reseed_dropout(self, rng: np.random.Generator) -> None:
    """Restarts every dropout generator of the networks (in NETWORKS order) from seeds drawn from `rng`."""
    for name in self.family.NETWORKS:
      for state in random_states(self.networks[name]):
        state.assign(np.array([rng.integers(0, 2**31 - 2), 0], dtype=state.dtype))

  def train_epoch(self, x_all, epoch: int) -> dict:
    """Trains epoch `epoch` (0-based) on x_all (N, h, w, c), or on the pictures of an ImageFiles
    streamed from disk; returns {loss name: mean over batches}."""
    # Shuffling, noise and the dropout masks are drawn from (seed, epoch): resuming at an epoch
    # redraws them exactly, with no random state in the checkpoint.
    rng = np.random.default_rng([self.config.seed, epoch])
    permutation = rng.permutation(len(x_all)).astype(np.int32)
    noise = np.asarray(self.family.noise(rng, len(x_all), self.config), np.float32)
    self.reseed_dropout(rng)  # drawn after the noise: the permutation and noise are those of before
    phase = self.trainer.phase(epoch)
    if isinstance(x_all, ImageFiles):
      run = self._stream_functions.setdefault(phase, stream_function(self.trainer, phase))
      means = stream_epoch(run, x_all, permutation, noise, self.config.batch_size)
    else:
      run = self.epoch_function(phase, noise.shape[1:])
      means = run(x_all, tf.constant(permutation), tf.constant(noise)).numpy()
    return dict(zip(self.trainer.loss_names, (float(v) for v in means)))

  def sample(self, n: int = 64) -> Optional[np.ndarray]:
    """The family's samples from a fixed noise draw (the same every epoch), or None."""
    fixed = self.family.noise(np.random.default_rng([self.config.seed, SAMPLE_SEED]), n, self.config)
    return self.family.sample(self.networks, fixed)


def epoch_loop(trainer, batch: int, phase: int, x_all, permutation, noise_all, step=None):
  """One epoch of `trainer` over x_all[permutation] in batches of `batch` (traced inside a
  tf.function); returns the mean over batches of each loss (trainer.loss_names). `step(x, noise,
  phase)` replaces trainer.train_step (distribute.replicated_step: the batch split across replicas)."""
  step = step or trainer.train_step
  n = tf.shape(permutation)[0]
  batches = (n + batch - 1) // batch
  names = trainer.loss_names
  totals = tf.zeros(len(names))
  for b in tf.range(batches):
    lo, hi = b * batch, tf.minimum((b + 1) * batch, n)
    out = step(tf.gather(x_all, permutation[lo:hi]), noise_all[lo:hi], phase)
    totals += tf.stack([out[name] for name in names])
  return totals / tf.cast(batches, tf.float32)


def stream_loop(trainer, phase: int, dataset):
  """epoch_loop for images streamed from disk: one epoch of `trainer` over the (images, noise)
  batches of `dataset` (traced inside a tf.function); the mean over batches of each loss."""
  names = trainer.loss_names
  totals = tf.zeros(len(names))
  batches = tf.constant(0)
  for x, noise in iter(dataset):  # an iterator: the steps run in this graph, not in a tf.data function
    out = trainer.train_step(x, noise, phase)
    totals += tf.stack([out[name] for name in names])
    batches += 1
  return totals / tf.cast(batches, tf.float32)


def stream_function(trainer, phase: int):
  """The compiled stream_loop of `phase`: traced once per dataset structure, not per epoch (a
  tf.data.Dataset argument is traced by its element spec)."""
  return tf.function(functools.partial(stream_loop, trainer, phase))


def stream_epoch(run, files: ImageFiles, permutation, noise, batch_size: int) -> np.ndarray:
  """Runs the compiled stream_loop `run` over `files` in the order `permutation`, zipped with the
  rows of `noise`; a picture that does not decode is an AnoganError naming it."""
  try:
    return run(files.dataset(permutation, noise, batch_size)).numpy()
  except PICTURE_ERRORS:
    error = files.unreadable()
    if error is None:
      raise  # not a picture's fault
    raise error from None


class EncoderDriver:
  """AnoGAN's warm-start encoder E on a trained G and D (`networks`, left unchanged): its trainer
  (anogan.EncoderTrainer), its epoch counter, the GAN epoch it is trained against, and its
  compiled epoch (one trace for the run). Its initial weights come from (seed, ENCODER_SEED),
  whatever ran before in the process, so E trained later on a finished GAN is E trained in one go."""

  def __init__(self, config: Config, networks: dict):
    self.config = config
    keras.utils.set_random_seed(int(np.random.default_rng([config.seed, ENCODER_SEED]).integers(2**31 - 1)))
    self.encoder = anogan.build_encoder(config)
    self.trainer = anogan.EncoderTrainer(config, networks, self.encoder)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.gan_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="gan_epoch")
    signature = [tf.TensorSpec((None,) + config.image_shape, tf.float32), tf.TensorSpec((None,), tf.int32)]
    self._run = tf.function(self._train_epoch, input_signature=signature)
    self._stream = stream_function(self.trainer, 0)

  def checkpoint(self) -> tf.train.Checkpoint:
    # E's weights listed explicitly, as the Driver lists each network's (BN statistics included).
    return tf.train.Checkpoint(encoder=self.encoder, encoder_weights=list(self.encoder.weights),
                               **self.trainer.checkpoint_items(), epoch=self.epoch, gan_epoch=self.gan_epoch)

  def _train_epoch(self, x_all, permutation):
    no_noise = tf.zeros((tf.shape(permutation)[0], 0))
    return epoch_loop(self.trainer, self.config.batch_size, 0, x_all, permutation, no_noise)

  def train_epoch(self, x_all, epoch: int) -> dict:
    """Trains E's epoch `epoch` (0-based) on x_all (N, h, w, c) or an ImageFiles (streamed); returns
    {loss name: mean over batches}."""
    rng = np.random.default_rng([self.config.seed, ENCODER_SEED, epoch])
    permutation = rng.permutation(len(x_all)).astype(np.int32)
    if isinstance(x_all, ImageFiles):
      no_noise = np.zeros((len(x_all), 0), np.float32)
      means = stream_epoch(self._stream, x_all, permutation, no_noise, self.config.batch_size)
    else:
      means = self._run(x_all, tf.constant(permutation)).numpy()
    return dict(zip(self.trainer.loss_names, (float(v) for v in means)))

  def reconstructions(self, x) -> np.ndarray:
    """Rows of 8 images x over rows of their G(E(x)), all in inference mode: (2 * len(x), h, w, c)."""
    generated = self.trainer.generator(self.encoder(x, training=False), training=False).numpy()
    rows = [part for start in range(0, len(x), 8) for part in (x[start:start + 8], generated[start:start + 8])]
    return np.concatenate(rows)


def read_history(path: str) -> List[dict]:
  """history.csv's rows as {column: number}, its columns whatever its header names."""
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    rows = []
    reader = csv.DictReader(f)
    for row in reader:
      try:
        rows.append({"epoch": int(row["epoch"]), **{k: float(row[k]) for k in reader.fieldnames if k != "epoch"}})
      except (KeyError, TypeError, ValueError):
        break  # a torn last line from a crash: drop it and everything after
    return rows


def _history_writer(f, fields: Sequence[str]):
  return csv.DictWriter(f, fields, extrasaction="ignore", lineterminator="\n")


def write_history(path: str, rows: List[dict], fields: Sequence[str]) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline="") as f:
      writer = _history_writer(f, fields)
      writer.writeheader()
      writer.writerows(rows)


def append_history(path: str, row: dict, fields: Sequence[str]) -> None:
  with open(path, "a", newline="") as f:
    _history_writer(f, fields).writerow(row)
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


def save_checkpoint(checkpoint: tf.train.Checkpoint, directory: str, number: int,
                    point: str = "checkpoint_written") -> str:
  """Writes ckpt-<number>, then commits it by atomically rewriting the state file.

  A kill before the commit leaves the previous checkpoint as the latest; the half-written
  files are overwritten by the next save of that number. Keeps the last CHECKPOINTS_KEPT.
  """
  os.makedirs(directory, exist_ok=True)
  checkpoint.save_counter.assign(number)  # as CheckpointManager does; restore() expects it
  path = checkpoint.write(os.path.join(directory, f"ckpt-{number}"))
  fault_point(point, number - 1)
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


def restore_checkpoint(driver, directory: str) -> int:
  """Restores the latest checkpoint into `driver` (a Driver or an EncoderDriver); returns the
  next epoch to train (0: none)."""
  path = latest_checkpoint(directory)
  if path is None:
    return 0
  try:
    driver.checkpoint().restore(path).assert_existing_objects_matched()
  except Exception as e:  # TF reports damage as OpError, IndexError ("Read less bytes"), ValueError...
    raise AnoganError(f"checkpoint {path} cannot be read ({type(e).__name__}: damaged or truncated); "
                      f"delete {directory} to train from scratch in this workdir, or pass --overwrite "
                      "to start over") from None
  return int(driver.epoch.numpy())


# --- the workdir: checked without writing anything, then written only once everything is known good

def check_workdir(config: Config, workdir: str, overwrite: bool = False) -> None:
  """Read-only checks: the workdir can be created here, and an existing one matches `config` and
  has a readable threshold.json (or none)."""
  check_folder_can_be_made(workdir, "workdir", "--workdir")
  flags_path = os.path.join(workdir, "flags.txt")
  if os.path.exists(flags_path) and not overwrite:
    try:
      with open(flags_path) as f:
        old = Config.from_flagfile_text(f.read())
    except (OSError, UnicodeDecodeError, AnoganError) as e:
      raise AnoganError(f"{flags_path} is damaged ({e if isinstance(e, AnoganError) else type(e).__name__}); "
                        "restore it, or pass --overwrite to start over") from None
    if old.model != config.model:
      raise AnoganError(f"workdir {workdir} holds a model trained with --model={old.model} (its flags.txt), not "
                        f"--model={config.model}; use another --workdir for --model={config.model}, or pass "
                        "--overwrite to replace it")
    changed = [f.name for f in dataclasses.fields(Config)
               if f.name not in NOT_TRAINING_FIELDS and getattr(old, f.name) != getattr(config, f.name)]
    if old.model == anogan.NAME:  # the GAN does not read the encoder's settings
      changed = [name for name in changed if name not in ENCODER_FIELDS]
      encoder = os.path.join(workdir, ENCODER_CHECKPOINTS)
      if os.path.exists(os.path.join(encoder, "checkpoint")):
        for name in ENCODER_FIELDS:
          if getattr(old, name) != getattr(config, name):
            was, now = flag_text(getattr(old, name)), flag_text(getattr(config, name))
            raise AnoganError(f"the warm-start encoder in {workdir} was trained with --{name}={was} (now {now}); "
                              f"keep that value, or delete {encoder} to train a new encoder on the same GAN")
    if changed:
      name = changed[0]
      raise AnoganError(f"workdir {workdir} was trained with other settings (--{name}={getattr(old, name)}, "
                        f"now {getattr(config, name)}); use another --workdir or pass --overwrite to start over")
  if not overwrite and config.val_fraction > 0:
    threshold.read(workdir)  # a damaged threshold.json: a one-line error now, not after training


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
      files = ("history.csv", "loss.png", ENCODER_HISTORY, ENCODER_LOSS_PLOT, f"{anogan.ENCODER}.keras",
               threshold.THRESHOLD_FILE)
      for name in files + models.network_files():
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
  for folder in (workdir, os.path.join(workdir, "samples"), os.path.join(workdir, "checkpoints"),
                 os.path.join(workdir, ENCODER_CHECKPOINTS)):
    if not os.path.isdir(folder):
      continue
    for name in os.listdir(folder):
      if _TEMPORARY.match(name):
        path = os.path.join(folder, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def collapse_warning(history: List[dict], loss: str = "d_loss") -> Optional[str]:
  """A warning when the discriminator's `loss` stayed below COLLAPSE_D_LOSS for the last
  COLLAPSE_EPOCHS epochs (reported once per streak: exactly when the streak reaches that length),
  else None."""
  streak = 0
  for row in reversed(history):
    if row[loss] >= COLLAPSE_D_LOSS:
      break
    streak += 1
  if streak != COLLAPSE_EPOCHS:
    return None
  first = history[-streak]["epoch"] + 1
  return (f"the discriminator has collapsed: {loss} < {COLLAPSE_D_LOSS:g} for {streak} epochs in a row "
          f"(epochs {first}-{history[-1]['epoch'] + 1}), so the generator gets no useful gradient; "
          "look at the samples, and if they stopped improving restart with --overwrite and e.g. a lower "
          "--lr, --d_dropout or --g_steps")


def enable_determinism(config: Config) -> None:
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass(frozen=True)
class Loop:
  """Where one of a run's two epoch loops (the GAN's, the warm-start encoder's) writes: paths
  relative to the workdir, and the prefix of its fault points, TensorBoard tags and sample grids."""
  desc: str  # the progress bar's
  history: str
  checkpoints: str
  loss_plot: str
  tensorboard: str
  prefix: str


GAN_LOOP = Loop("train", "history.csv", "checkpoints", "loss.png", "tensorboard", "")
ENCODER_LOOP = Loop("encoder", ENCODER_HISTORY, ENCODER_CHECKPOINTS, ENCODER_LOSS_PLOT,
                    os.path.join("tensorboard", "encoder"), "encoder_")


def run_epochs(driver, loop: Loop, workdir: str, start: int, epochs: int, x_train, progress: bool,
               images, diverged, collapse_loss: Optional[str] = None) -> List[dict]:
  """Epochs start..epochs-1 of `driver` (a Driver or an EncoderDriver) in a prepared, locked
  workdir; returns the history, rows of earlier epochs included.

  Per epoch: train, stop with `diverged(epoch, "name=value, ...")` as the error on a non-finite
  loss (before anything of the epoch is written), save `images()` (None: none) as
  samples/<prefix>epoch_NNNN.png and in TensorBoard, append the history row, then commit the
  checkpoint: a kill at any point resumes at the last committed epoch, dropping the history
  rows past it. `collapse_loss` (the GAN's d_loss) warns when the discriminator wins outright.
  Ends with the loss plot (accuracies left out)."""
  names = driver.trainer.loss_names
  history_path = os.path.join(workdir, loop.history)
  fields = history_fields(names)
  # The rows of earlier epochs, in this run's columns (an older run may have logged others).
  history = [{k: v for k, v in row.items() if k in fields}
             for row in read_history(history_path) if row["epoch"] < start]
  write_history(history_path, history, fields)  # repairs what a crash left after the last checkpoint
  writer = tf.summary.create_file_writer(os.path.join(workdir, loop.tensorboard))
  bar = tqdm(range(start, epochs), initial=start, total=epochs, desc=loop.desc, disable=not progress,
             dynamic_ncols=True)
  try:
    for epoch in bar:
      began = time.perf_counter()
      metrics = driver.train_epoch(x_train, epoch)
      if fault_point(f"{loop.prefix}loss", epoch) == "nan":
        metrics[names[0]] = float("nan")
      fault_point(f"{loop.prefix}epoch", epoch)
      bad = [f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v)]
      if bad:
        raise AnoganError(diverged(epoch, ", ".join(bad)))
      row = {"epoch": epoch, **metrics, "seconds": round(time.perf_counter() - began, 4)}
      samples = images()
      if samples is not None:
        os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
        plots.save_grid(samples, os.path.join(workdir, "samples", f"{loop.prefix}epoch_{epoch + 1:04d}.png"))
      summaries.training_epoch(writer, epoch + 1, metrics, samples, prefix=loop.prefix)
      append_history(history_path, row, fields)  # before the checkpoint: a resume drops rows past it
      history.append(row)
      fault_point(f"{loop.prefix}history", epoch)
      driver.epoch.assign(epoch + 1)
      save_checkpoint(driver.checkpoint(), os.path.join(workdir, loop.checkpoints), epoch + 1,
                      point=f"{loop.prefix}checkpoint_written")
      if collapse_loss:
        warning = collapse_warning(history, collapse_loss)
        if warning:
          logging.warning(warning)
      bar.set_postfix({key: f"{metrics[key]:.4f}" for key in names})
  finally:
    bar.close()
    writer.close()
  if history:
    plots.loss_plot(history, os.path.join(workdir, loop.loss_plot), [k for k in names if not k.endswith("_acc")])
  return history


def train(config: Config, workdir: str, overwrite: bool = False, data=None,
          progress: bool = True) -> List[dict]:
  """Trains (or resumes) the `config.model` family in `workdir`, then anogan's warm-start
  encoder for `config.encoder_epochs`; returns the history, one dict per epoch ({"epoch", the
  family's loss names, "seconds"}; the encoder's is in encoder_history.csv).

  The workdir is locked first (created if new): a second train on it fails at once. Everything
  that can fail on bad input (settings, data, a damaged checkpoint or threshold.json) is checked
  before the workdir is written, so bad input leaves an existing workdir as it was and leaves no
  new one behind.
  A NaN or inf loss stops training with AnoganError, keeping the last good checkpoint.
  """
  config = resolve_image_shape(config)  # a folder's image size and channels, as flags.txt records them
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
  data = data if data is not None else load_one_class(config, read_test=False)
  if len(data.x_train) == 0:
    raise AnoganError("no training images; check --normal_classes and --train_examples")
  strategy = distribute.make_strategy(config.strategy)  # first: multiworker configures TF at startup
  # In memory as one tensor; a folder's pictures stay on disk (ImageFiles), streamed each epoch.
  streamed = isinstance(data.x_train, ImageFiles)
  if strategy is not None and streamed:
    raise AnoganError(f"--strategy={config.strategy} trains from arrays in memory only, not from a folder streamed "
                      "from disk yet; use --strategy=default for a folder dataset")
  x_train = data.x_train if streamed else tf.constant(data.x_train)
  if strategy is not None:
    distribute.check_training(config, len(data.x_train), strategy)
  enable_determinism(config)
  keras.utils.set_random_seed(config.seed)
  driver = Driver(config, strategy)
  start = 0 if overwrite else restore_checkpoint(driver, os.path.join(workdir, GAN_LOOP.checkpoints))
  encoder, encoder_start = None, 0
  if config.encoder_epochs > 0:
    encoder = EncoderDriver(config, driver.networks)
    encoder_start = 0 if overwrite else restore_checkpoint(encoder, os.path.join(workdir, ENCODER_CHECKPOINTS))
    gan_epochs = max(start, config.epochs)  # the GAN epoch E trains on, once the GAN's epochs are done
    if encoder_start and int(encoder.gan_epoch.numpy()) != gan_epochs:
      logging.warning(f"the warm-start encoder was trained on the GAN of epoch {int(encoder.gan_epoch.numpy())}, "
                      f"and the GAN is now trained to epoch {gan_epochs}: training a new encoder")
      encoder, encoder_start = EncoderDriver(config, driver.networks), 0

  # --- nothing above wrote to the workdir
  prepare_workdir(config, workdir, overwrite)

  def diverged(epoch: int, bad: str) -> str:  # nothing of this epoch is kept: its weights are already poisoned
    kept = (f"kept the checkpoint of epoch {epoch}: rerun with --epochs={epoch} to export its models, or"
            if epoch > 0 else "no checkpoint was saved:")
    return f"training diverged at epoch {epoch + 1} ({bad}); {kept} start over with --overwrite and a lower --lr"

  history = run_epochs(driver, GAN_LOOP, workdir, start, config.epochs, x_train, progress, driver.sample, diverged,
                       collapse_loss=driver.trainer.collapse_loss)
  for name in driver.family.NETWORKS:
    with atomic_path(os.path.join(workdir, f"{name}.keras")) as tmp:
      driver.networks[name].save(tmp)
    fault_point("export")
  if encoder is not None:
    encoder.gan_epoch.assign(driver.epoch)
    _train_encoder(config, workdir, encoder, encoder_start, x_train, progress)
  threshold.store_after_training(config, workdir, progress)  # with --val_fraction: threshold.json
  return history


def _train_encoder(config, workdir, encoder: EncoderDriver, start: int, x_train, progress) -> List[dict]:
  """The warm-start encoder's epochs start..encoder_epochs-1 on the GAN's final G and D (the
  workdir prepared and locked by the caller); exports encoder.keras. Returns E's history."""
  directory = os.path.join(workdir, ENCODER_CHECKPOINTS)
  exported = os.path.join(workdir, f"{anogan.ENCODER}.keras")
  if start == 0:  # what an encoder trained on another GAN, or killed before its first epoch, left
    shutil.rmtree(directory, ignore_errors=True)
    if os.path.exists(exported):
      os.remove(exported)
  if isinstance(x_train, ImageFiles):
    shown = x_train.read(range(min(ENCODER_SAMPLES, len(x_train))))
  else:
    shown = x_train[:ENCODER_SAMPLES].numpy()

  def diverged(epoch: int, bad: str) -> str:
    return (f"warm-start encoder training diverged at encoder epoch {epoch + 1} ({bad}); the GAN is kept: "
            f"delete {directory} and train the encoder again, e.g. with a lower --kappa")

  history = run_epochs(encoder, ENCODER_LOOP, workdir, start, config.encoder_epochs, x_train, progress,
                       lambda: encoder.reconstructions(shown), diverged)
  with atomic_path(exported) as tmp:
    encoder.encoder.save(tmp)
  fault_point("encoder_export")
  return history
