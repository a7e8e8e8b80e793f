"""Several devices and hosts on TensorFlow's own engine (`--strategy`): the strategy, TF_CONFIG's
checks, and how a batch is split across replicas.

`default` is no strategy at all (None): the single-device code path, unchanged. `mirrored` is
tf.distribute.MirroredStrategy over every local device (GPUs, or the logical CPU devices of
`set_cpu_devices`); `multiworker` is tf.distribute.MultiWorkerMirroredStrategy over the hosts of
the TF_CONFIG environment variable, as TensorFlow documents it.

Training (driver.Driver): networks and optimizers are built under `strategy.scope()`; each
global batch of --batch_size images is split into contiguous, nearly equal parts, one per
replica (`replica_slice`); every replica runs the family's own `train_step` on its part. Keras'
optimizers sum the replicas' gradients, so each optimizer's `loss_scale_factor` is set to the
number of replicas: the applied gradient is the mean of the replicas' gradients, i.e. the global
batch's gradient when the parts are equal. BatchNormalization keeps per-replica statistics
(Keras' `synchronized=False`, the layers are not changed): each replica normalises by its own
part of the batch, and the moving statistics are the mean of the replicas'. The losses logged
are the mean of the replicas' losses.

Scoring (`score_chunks`): each chunk of images is split the same way and every replica runs the
scorer's stateless `score_tensors` graph on its part; results are gathered back in image order on
every worker, so each host's evaluate or score sees every image's result.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Optional

import numpy as np
import tensorflow as tf

from anogan_tf import models
from anogan_tf.errors import AnoganError

STRATEGIES = ("default", "mirrored", "multiworker")
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


def set_cpu_devices(n: int) -> None:
  """Splits the first CPU into `n` logical devices (so `mirrored` has n replicas on a CPU-only
  machine). Process-wide and only possible before TensorFlow initialises its devices: for the
  command-line tools (--cpu_devices) and tests' subprocesses, never called by the library."""
  if n <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
  except RuntimeError:
    raise AnoganError(f"--cpu_devices={n} came after TensorFlow initialised its devices; "
                      "pass it on the command line of a new process") from None


def check_tf_config(text: Optional[str]) -> dict:
  """TF_CONFIG's cluster and task, checked, or a one-line AnoganError naming what to fix."""
  fix = f"set it as e.g. {TF_CONFIG_EXAMPLE} (one entry per host, this host's index)"
  if not text:
    raise AnoganError(f"--strategy=multiworker needs the TF_CONFIG environment variable; {fix}")
  try:
    config = json.loads(text)
  except ValueError as e:
    raise AnoganError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}); {fix}") from None
  cluster = config.get("cluster") if isinstance(config, dict) else None
  if not isinstance(cluster, dict) or not cluster:
    raise AnoganError(f"TF_CONFIG has no \"cluster\" object; {fix}")
  for role, hosts in cluster.items():
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and ":" in h for h in hosts):
      raise AnoganError(f"TF_CONFIG's cluster \"{role}\" is not a list of \"host:port\" strings; {fix}")
  task = config.get("task")
  if not isinstance(task, dict) or task.get("type") not in cluster:
    raise AnoganError(f"TF_CONFIG's \"task\" must name a \"type\" of the cluster ({', '.join(cluster)}); {fix}")
  index = task.get("index")
  if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task["type"]]):
    raise AnoganError(f"TF_CONFIG's task index {index!r} is not one of 0..{len(cluster[task['type']]) - 1}; {fix}")
  return config


# The process's strategy of each name: train then score in one process share it. TensorFlow
# configures a multiworker's collectives once per process, and every new strategy numbers its
# collectives from the same keys, so a second one's (scoring's gather) would collide with the
# first's (training's all-reduce) and abort.
_STRATEGIES = {}


def make_strategy(name: str) -> Optional[tf.distribute.Strategy]:
  """The tf.distribute strategy of --strategy=`name` (one per process), or None for `default`
  (one device)."""
  if name not in STRATEGIES:
    raise AnoganError(f"unknown --strategy={name}; use one of {', '.join(STRATEGIES)}")
  if name == "default":
    return None
  if name == "multiworker":
    check_tf_config(os.environ.get("TF_CONFIG"))
  if name not in _STRATEGIES:
    _STRATEGIES[name] = (tf.distribute.MirroredStrategy() if name == "mirrored"
                         else tf.distribute.MultiWorkerMirroredStrategy())
  return _STRATEGIES[name]


def scope(strategy: Optional[tf.distribute.Strategy]):
  """strategy.scope(), or nothing for the default path."""
  return strategy.scope() if strategy is not None else contextlib.nullcontext()


def make_scorer(family, config, load_networks):
  """(scorer, networks): family.make_scorer(config, networks) on the devices of config.strategy,
  the networks (`load_networks()`) loaded under its scope and the scorer's chunks split across its
  replicas; for `default` the scorer itself. The networks are returned for what else reads their
  weights (threshold.weights_sha256), so they are loaded once."""
  strategy = make_strategy(config.strategy)
  with scope(strategy):
    networks = load_networks()
  scorer = family.make_scorer(config, networks)
  return (scorer if strategy is None else DistributedScorer(scorer, strategy)), networks


def check_batch(batch_size: int, strategy: Optional[tf.distribute.Strategy], flag: str = "--batch_size") -> None:
  """A global batch must give every replica as many images."""
  replicas = 1 if strategy is None else strategy.num_replicas_in_sync
  if batch_size % replicas:
    lower = max(replicas, batch_size // replicas * replicas)
    raise AnoganError(f"{flag}={batch_size} cannot be split evenly across {replicas} replicas; "
                      f"use a multiple of {replicas} (e.g. {flag}={lower})")


def check_training(config, n_images: int, strategy: tf.distribute.Strategy) -> None:
  """What training under `strategy` needs: a batch that splits evenly, a last batch with an image
  for every replica, and no training stage of the family (models.base.Stage: they train on one
  device)."""
  replicas = strategy.num_replicas_in_sync
  check_batch(config.batch_size, strategy)
  last = n_images % config.batch_size
  if 0 < last < replicas:
    raise AnoganError(f"the last batch of each epoch has {last} training image(s), fewer than the {replicas} replicas; "
                      f"use a --train_examples or --batch_size that leaves none or at least {replicas}")
  for stage in models.base.stages(models.family(config.model)):  # e.g. AnoGAN's warm-start encoder
    if getattr(config, stage.epochs_field) > 0:
      field = stage.epochs_field
      raise AnoganError(f"--{field} trains on one device, not with --strategy={config.strategy}; train the "
                        f"{config.model} networks with this --strategy and --{field}=0, then train again with "
                        f"--strategy=default --{field}=N (the {config.model} networks are kept)")


def replica_slice(x):
  """This replica's contiguous part of the global batch x (inside strategy.run): rows
  [n*i/r, n*(i+1)/r) for replica i of r, so the parts in replica order are x again."""
  context = tf.distribute.get_replica_context()
  n = tf.shape(x)[0]
  r, i = context.num_replicas_in_sync, context.replica_id_in_sync_group
  return x[n * i // r:n * (i + 1) // r]


def average_gradients(strategy: tf.distribute.Strategy, optimizers) -> None:
  """Makes each Keras optimizer apply the mean of the replicas' gradients (it sums them)."""
  for optimizer in optimizers:
    optimizer.loss_scale_factor = float(strategy.num_replicas_in_sync)


def replicated_step(strategy: tf.distribute.Strategy, train_step):
  """train_step(x, noise, phase) on the global batch: each replica steps on its part; the mean
  of the replicas' losses."""
  def step(x, noise, phase):
    out = strategy.run(lambda x, noise: train_step(replica_slice(x), replica_slice(noise), phase),
                       args=(x, noise))
    return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for name, value in out.items()}
  return step


class DistributedScorer:
  """A Scorer whose chunks are split across the replicas of `strategy`: each replica runs the
  wrapped scorer's stateless `score_tensors` on its part, results concatenated in image order.
  Chunks are the wrapped scorer's (`batch_size` images, the last padded; fewer images than that:
  one chunk of them, rounded up to a multiple of the replicas), as one device has them.
  A scorer that takes a start per image (Scorer.takes_initial_z: AnoGAN's search from a random z)
  starts from its own seeded draw `initial_z(N)` for the whole call, the z0 one device uses, so
  both search the same way."""

  def __init__(self, scorer, strategy: tf.distribute.Strategy):
    self.scorer, self.strategy = scorer, strategy
    self.batch_size, self.example_shape = scorer.batch_size, tuple(scorer.example_shape)
    self.residual_is_error = scorer.residual_is_error
    check_batch(self.batch_size, strategy, "--map_batch_size")
    # One trace per chunk size (a fixed shape, as one device's chunks have: TensorFlow optimises a
    # graph of unknown batch size differently, and the search amplifies that; see export_lib).
    self._run = tf.function(self._distributed, autograph=False)  # as score_tensors (models.base)

  def settings(self) -> dict:
    return self.scorer.settings()

  def _distributed(self, x, z0=None):
    def replica(x, z0):
      z0 = None if z0 is None else replica_slice(z0)
      return self.scorer.score_tensors(replica_slice(x), **({} if z0 is None else {"initial_z": z0})).as_dict()
    out = self.strategy.run(replica, args=(x, z0))
    # Every replica's part, in replica order, on every worker: a worker's local results alone are
    # its own replicas' parts, not the chunk (with several workers).
    return {name: self.strategy.gather(value, axis=0) for name, value in out.items()}

  def score_chunks(self, images) -> Iterator:
    from anogan_tf.models.base import ScoreResult, check_images
    x = check_images(images, self.example_shape)
    z0 = np.asarray(self.scorer.initial_z(len(x)), np.float32) if self.scorer.takes_initial_z else None
    replicas = self.strategy.num_replicas_in_sync
    size = min(self.batch_size, -(-len(x) // replicas) * replicas)  # a few images: no chunk padded to 1024
    for start in range(0, len(x), size):
      args = [x[start:start + size]] + ([] if z0 is None else [z0[start:start + size]])
      n = len(args[0])
      if n < size:  # pad the last chunk: rows are independent, so padding changes nothing
        args = [np.concatenate([a, np.zeros((size - n,) + a.shape[1:], np.float32)]) for a in args]
      out = {k: v.numpy()[:n] for k, v in self._run(*[tf.constant(a) for a in args]).items()}
      out.pop("initial_z", None)  # one device's ScoreResult has no such extra
      yield ScoreResult.from_dict(out)

  def score(self, images):
    from anogan_tf.models.base import ScoreResult
    return ScoreResult.concatenate(list(self.score_chunks(images)))
