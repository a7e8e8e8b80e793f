"""Training a workdir, the same for every model family: `train(config, workdir)`.

It locks the workdir (created if new), checks everything that can fail on bad input before
writing anything, runs the family's epochs with the engine's Driver (anogan_tf/engine/driver.py:
compiled epochs, checkpoints and resume, history, samples, NaN and collapse checks), exports the
networks as <network>.keras, then runs the family's training stages (models/base.py `Stage`, e.g.
AnoGAN's warm-start encoder for --encoder_epochs: checkpointed apart in checkpoints/<stage>/, with
its own history, loss plot and samples, resumable and kill-safe like the family's epochs; a stage
records the epoch of the networks it was trained against and starts over if they train further),
and stores the decision threshold (threshold.json) when --val_fraction holds images out.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from typing import List

import keras
import tensorflow as tf
from absl import logging

from anogan_tf import models
from anogan_tf.config import RESUMABLE_FIELDS, Config, flag_text
from anogan_tf.data import load_one_class, resolve_shape
from anogan_tf.data.folder import ImageFiles, resolve_image_shape
from anogan_tf.engine import distribute
from anogan_tf.engine.checkpoints import restore_checkpoint
from anogan_tf.engine.driver import (
  GAN_LOOP,
  Driver,
  StageDriver,
  enable_determinism,
  run_epochs,
)
from anogan_tf.engine.workdir import (
  create_and_lock_workdir,
  evaluation_folders,
  lock_evaluations,
  remove_created_folders,
)
from anogan_tf.errors import AnoganError
from anogan_tf.evaluation import threshold
from anogan_tf.utils.faults import fault_point
from anogan_tf.utils.files import atomic_path, check_folder_can_be_made, write_text

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
               if f.name not in RESUMABLE_FIELDS and getattr(old, f.name) != getattr(config, f.name)]
    for stage in models.base.stages(models.family(old.model)):  # the family's own epochs do not read these
      changed = [name for name in changed if name not in stage.fields]
      folder = os.path.join(workdir, stage.checkpoints)
      if os.path.exists(os.path.join(folder, "checkpoint")):
        for name in stage.fields:
          if getattr(old, name) != getattr(config, name):
            was, now = flag_text(getattr(old, name)), flag_text(getattr(config, name))
            raise AnoganError(f"{stage.what} in {workdir} was trained with --{name}={was} (now {now}); keep that "
                              f"value, or delete {folder} to train a new {stage.network} on the same "
                              f"{old.model} networks")
    if changed:
      name = changed[0]
      raise AnoganError(f"workdir {workdir} was trained with other settings (--{name}={getattr(old, name)}, "
                        f"now {getattr(config, name)}); use another --workdir or pass --overwrite to start over")
  if not overwrite and config.val_fraction > 0:
    threshold.read(workdir)  # a damaged threshold.json: a one-line error now, not after training


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
      files = ("history.csv", "loss.png", threshold.THRESHOLD_FILE) + tuple(
          name for stage in all_stages() for name in (stage.history, stage.loss_plot))
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
  for folder in [workdir, os.path.join(workdir, "samples"), os.path.join(workdir, "checkpoints")] + \
                [os.path.join(workdir, stage.checkpoints) for stage in all_stages()]:
    if not os.path.isdir(folder):
      continue
    for name in os.listdir(folder):
      if _TEMPORARY.match(name):
        path = os.path.join(folder, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def all_stages() -> list:
  """Every registered family's training stages: the files and folders a workdir may hold."""
  return [stage for name in models.names() for stage in models.base.stages(models.family(name))]


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
  # what the data says of the examples' shape (a folder's image size and channels, UCR series'
  # length and range), as flags.txt records it; data given by the caller comes with its config
  config = resolve_shape(config) if data is None else resolve_image_shape(config)
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
  keras.utils.set_random_seed(config.training_seed)
  driver = Driver(config, strategy)
  if config.ema_momentum > 0 and not driver.trainer.averages_weights:
    raise AnoganError(f"--ema_momentum={config.ema_momentum:g}: --model={config.model} keeps no average of its "
                      "weights; use --ema_momentum=0")
  start = 0 if overwrite else restore_checkpoint(driver, os.path.join(workdir, GAN_LOOP.checkpoints))
  stages = []  # (StageDriver, its first epoch) of each stage that runs
  for stage in models.base.stages(driver.family):
    if getattr(config, stage.epochs_field) > 0:
      run = StageDriver(config, stage, driver.networks)
      first = 0 if overwrite else restore_checkpoint(run, os.path.join(workdir, stage.checkpoints))
      trained_on = max(start, config.epochs)  # the epoch the stage trains on, once the family's epochs are done
      if first and int(run.trained_on.numpy()) != trained_on:
        logging.warning(f"{stage.what} was trained on the {config.model} networks of epoch "
                        f"{int(run.trained_on.numpy())}, and they are now trained to epoch {trained_on}: training "
                        f"a new {stage.network}")
        run, first = StageDriver(config, stage, driver.networks), 0
      stages.append((run, first))

  # --- nothing above wrote to the workdir
  prepare_workdir(config, workdir, overwrite)

  def diverged(epoch: int, bad: str) -> str:  # nothing of this epoch is kept: its weights are already poisoned
    kept = (f"kept the checkpoint of epoch {epoch}: rerun with --epochs={epoch} to export its models, or"
            if epoch > 0 else "no checkpoint was saved:")
    return f"training diverged at epoch {epoch + 1} ({bad}); {kept} start over with --overwrite and a lower --lr"

  history = run_epochs(driver, GAN_LOOP, workdir, start, config.epochs, x_train, progress, driver.sample, diverged,
                       collapse_loss=driver.trainer.collapse_loss)
  with distribute.scope(driver.strategy):
    driver.trainer.finalize()  # the weights it exports (--ema_momentum: their average); checkpoints keep the last
  for name in driver.family.NETWORKS:
    with atomic_path(os.path.join(workdir, f"{name}.keras")) as tmp:
      driver.networks[name].save(tmp)
    fault_point("export")
  for run, first in stages:
    run.trained_on.assign(driver.epoch)
    _train_stage(config, workdir, run, first, x_train, progress)
  # with --val_fraction: threshold.json, on the caller's held-out normals when it gave them
  threshold.store_after_training(config, workdir, progress, val_normals=data.x_val)
  return history


def _train_stage(config, workdir, run: StageDriver, start: int, x_train, progress) -> List[dict]:
  """A stage's epochs start..N-1 on the family's final networks (the workdir prepared and locked
  by the caller); exports the stage's network. Returns the stage's history."""
  stage = run.stage
  directory = os.path.join(workdir, stage.checkpoints)
  exported = os.path.join(workdir, f"{stage.network}.keras")
  if start == 0:  # what a stage trained on other networks, or killed before its first epoch, left
    shutil.rmtree(directory, ignore_errors=True)
    if os.path.exists(exported):
      os.remove(exported)
  if isinstance(x_train, ImageFiles):
    shown = x_train.read(range(min(stage.shown, len(x_train))))
  else:
    shown = x_train[:stage.shown].numpy()

  def diverged(epoch: int, bad: str) -> str:
    return (f"{stage.what} diverged at {stage.name} epoch {epoch + 1} ({bad}); the {config.model} networks are kept: "
            f"delete {directory} and train the {stage.network} again, {stage.retry}")

  history = run_epochs(run, run.loop, workdir, start, getattr(config, stage.epochs_field), x_train, progress,
                       lambda: run.samples(shown), diverged)
  with atomic_path(exported) as tmp:
    run.network.save(tmp)
  fault_point(f"{stage.name}_export")
  return history
