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

import dataclasses
import os
import re
import shutil
from typing import List

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from anogan_tf import models
from anogan_tf.config import Config, flag_text
from anogan_tf.data import load_one_class
from anogan_tf.data.folder import ImageFiles, resolve_image_shape
from anogan_tf.engine import distribute
from anogan_tf.engine.checkpoints import restore_checkpoint
from anogan_tf.engine.driver import (
  GAN_LOOP,
  Driver,
  Loop,
  enable_determinism,
  epoch_loop,
  run_epochs,
  stream_epoch,
  stream_function,
)
from anogan_tf.engine.workdir import (
  create_and_lock_workdir,
  evaluation_folders,
  lock_evaluations,
  remove_created_folders,
)
from anogan_tf.errors import AnoganError
from anogan_tf.evaluation import threshold
from anogan_tf.models import anogan
from anogan_tf.utils.faults import fault_point
from anogan_tf.utils.files import atomic_path, check_folder_can_be_made, write_text

# Settings that do not change what training computes: a workdir may be resumed with new values.
# (deterministic changes only the order of float additions, not the computation.)
# encoder_epochs is extendable like epochs: adding it to a finished anogan workdir trains only E.
NOT_TRAINING_FIELDS = {"epochs", "encoder_epochs", "data_dir", "test_examples", "lam", "map_steps", "map_lrs",
                       "map_reduction", "z_init", "z_init_std", "map_batch_size", "deterministic", "eval_split",
                       "vae_score", "initial_z", "feature_layer", "map_restarts", "ink_power",
                       "strategy"}  # distribute: a workdir resumes on other devices (same checkpoint format)
NOT_TRAINING_FIELDS |= {"threshold_percentile"}  # a rerun applies it to the stored held-out scores
# The warm-start encoder's random streams: its initial weights from (seed, ENCODER_SEED), the
# shuffling of its epoch e from (seed, ENCODER_SEED, e); apart from the GAN's (seed, e).
ENCODER_SEED = 2**31 - 2
# Settings only the warm-start encoder's training reads (anogan): free to change on a workdir
# until its encoder training has begun, refused after (its checkpoints would not match them).
ENCODER_FIELDS = ("kappa", "e_filters", "e_strides", "e_batchnorm", "feature_layer")
ENCODER_CHECKPOINTS = os.path.join("checkpoints", "encoder")
ENCODER_HISTORY, ENCODER_LOSS_PLOT = "encoder_history.csv", "encoder_loss.png"
ENCODER_SAMPLES = 32  # training images shown over G(E(x)) in samples/encoder_epoch_*.png


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


# --- checkpoints: TF's own files, committed by an atomic rewrite of the `checkpoint` state file


# --- the workdir: checked without writing anything, then written only once everything is known good

def check_workdir(config: Config, workdir: str, overwrite: bool = False) -> None:
  """Read-only checks: the workdir can be created here, and an existing one matches `config`."""
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


ENCODER_LOOP = Loop("encoder", ENCODER_HISTORY, ENCODER_CHECKPOINTS, ENCODER_LOSS_PLOT,
                    os.path.join("tensorboard", "encoder"), "encoder_")


def train(config: Config, workdir: str, overwrite: bool = False, data=None,
          progress: bool = True) -> List[dict]:
  """Trains (or resumes) the `config.model` family in `workdir`, then anogan's warm-start
  encoder for `config.encoder_epochs`; returns the history, one dict per epoch ({"epoch", the
  family's loss names, "seconds"}; the encoder's is in encoder_history.csv).

  The workdir is locked first (created if new): a second train on it fails at once. Everything
  that can fail on bad input (settings, data, a damaged checkpoint) is checked before the workdir
  is written, so bad input leaves an existing workdir as it was and leaves no new one behind.
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
