"""The training driver, the same for every model family: resumable epochs compiled per
learning-rate phase, from arrays in memory or pictures streamed from disk; checkpoints,
history.csv, TensorBoard, sample grids, NaN and collapse checks."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import List, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from anogan_tf import models
from anogan_tf.config import Config
from anogan_tf.data.folder import PICTURE_ERRORS, ImageFiles
from anogan_tf.engine import distribute
from anogan_tf.engine.checkpoints import save_checkpoint
from anogan_tf.engine.history import append_history, collapse_warning, history_fields, read_history, write_history
from anogan_tf.errors import AnoganError
from anogan_tf.nn import precision
from anogan_tf.nn.networks import random_states
from anogan_tf.utils.faults import fault_point
from anogan_tf.visualization import plots, summaries

SAMPLE_SEED = 2**31 - 1  # the fixed noise of the sample grids: drawn from (seed, SAMPLE_SEED)


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
      self.networks = precision.built(config.precision, lambda: self.family.build_networks(config))
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
      signature = [tf.TensorSpec((None,) + models.base.example_shape(self.family, self.config), tf.float32),
                   tf.TensorSpec((None,), tf.int32),
                   tf.TensorSpec((None,) + tuple(noise_shape), tf.float32)]
      self._epoch_functions[key] = tf.function(functools.partial(self._train_epoch, phase),
                                               input_signature=signature, autograph=False)  # epoch_loop
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
    rng = np.random.default_rng([self.config.training_seed, epoch])
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
    fixed = self.family.noise(np.random.default_rng([self.config.training_seed, SAMPLE_SEED]), n, self.config)
    return self.family.sample(self.networks, fixed)


def epoch_loop(trainer, batch: int, phase: int, x_all, permutation, noise_all, step=None):
  """One epoch of `trainer` over x_all[permutation] in batches of `batch` (traced inside a
  tf.function with autograph off: the loop is a tf.while_loop, and a family's step is traced as
  written, models.base.Trainer); returns the mean over batches of each loss (trainer.loss_names).
  `step(x, noise, phase)` replaces trainer.train_step (distribute.replicated_step: the batch split
  across replicas)."""
  step = step or trainer.train_step
  n = tf.shape(permutation)[0]
  batches = (n + batch - 1) // batch
  names = trainer.loss_names

  def one_batch(b, totals):
    lo, hi = b * batch, tf.minimum((b + 1) * batch, n)
    out = step(tf.gather(x_all, permutation[lo:hi]), noise_all[lo:hi], phase)
    return b + 1, totals + tf.stack([out[name] for name in names])

  _, totals = tf.while_loop(lambda b, _: b < batches, one_batch, (tf.constant(0), tf.zeros(len(names))))
  return totals / tf.cast(batches, tf.float32)


def stream_loop(trainer, phase: int, dataset):
  """epoch_loop for images streamed from disk: one epoch of `trainer` over the (images, noise)
  batches of `dataset` (traced inside a tf.function); the mean over batches of each loss."""
  names = trainer.loss_names
  totals = tf.zeros(len(names))
  batches = tf.constant(0)
  # autograph writes this loop over an iterator (the steps run in this graph, not in a tf.data
  # function); the family's step is traced as written (models.base.Trainer)
  step = tf.autograph.experimental.do_not_convert(trainer.train_step)
  for x, noise in iter(dataset):
    out = step(x, noise, phase)
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


def run_epochs(driver, loop: Loop, workdir: str, start: int, epochs: int, x_train, progress: bool,
               images, diverged, collapse_loss: Optional[str] = None) -> List[dict]:
  """Epochs start..epochs-1 of `driver` (a Driver or a StageDriver) in a prepared, locked
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


class StageDriver:
  """A family's training stage (models.base.Stage: AnoGAN's warm-start encoder) on its trained
  networks (`networks`, left unchanged): the stage's network and trainer, its epoch counter, the
  epoch of the family's networks it is trained against, and its compiled epoch (one trace for the
  run). Its initial weights come from (seed, stage.seed), whatever ran before in the process, so
  a stage trained later on finished networks is the stage trained in one go."""

  def __init__(self, config: Config, stage, networks: dict):
    self.config, self.stage = config, stage
    keras.utils.set_random_seed(int(np.random.default_rng([config.training_seed, stage.seed]).integers(2**31 - 1)))
    self.network, self.trainer = precision.built(config.precision, lambda: stage.build(config, networks))
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.trained_on = tf.Variable(0, dtype=tf.int64, trainable=False, name="gan_epoch")
    shape = models.base.example_shape(models.family(config.model), config)
    signature = [tf.TensorSpec((None,) + shape, tf.float32), tf.TensorSpec((None,), tf.int32)]
    self._run = tf.function(self._train_epoch, input_signature=signature, autograph=False)  # epoch_loop
    self._stream = stream_function(self.trainer, 0)
    self.loop = Loop(stage.name, stage.history, stage.checkpoints, stage.loss_plot,
                     os.path.join("tensorboard", stage.name), f"{stage.name}_")

  def checkpoint(self) -> tf.train.Checkpoint:
    # The network's weights listed explicitly, as the Driver lists each network's (BN statistics
    # included); the names are those of the first stage's checkpoints (AnoGAN's encoder), so
    # workdirs written before stages were generic resume.
    return tf.train.Checkpoint(**{self.stage.network: self.network,
                                  f"{self.stage.network}_weights": list(self.network.weights)},
                               **self.trainer.checkpoint_items(), epoch=self.epoch, gan_epoch=self.trained_on)

  def _train_epoch(self, x_all, permutation):
    no_noise = tf.zeros((tf.shape(permutation)[0], 0))
    return epoch_loop(self.trainer, self.config.batch_size, 0, x_all, permutation, no_noise)

  def train_epoch(self, x_all, epoch: int) -> dict:
    """Trains the stage's epoch `epoch` (0-based) on x_all (N, h, w, c) or an ImageFiles
    (streamed); returns {loss name: mean over batches}."""
    rng = np.random.default_rng([self.config.training_seed, self.stage.seed, epoch])
    permutation = rng.permutation(len(x_all)).astype(np.int32)
    if isinstance(x_all, ImageFiles):
      no_noise = np.zeros((len(x_all), 0), np.float32)
      means = stream_epoch(self._stream, x_all, permutation, no_noise, self.config.batch_size)
    else:
      means = self._run(x_all, tf.constant(permutation)).numpy()
    return dict(zip(self.trainer.loss_names, (float(v) for v in means)))

  def samples(self, x) -> np.ndarray:
    return self.stage.samples(self.network, self.trainer, x)
