"""LatentMapper: AnoGAN's search for the z whose G(z) best explains a query image; AnoGAN's
scorer (anogan_tf.models.base.Scorer: `score(images)` is `map(images)` as a ScoreResult).

z is one trainable variable for a whole batch. The loss is summed over the batch and Adam
acts element-wise, so every image follows the trajectory it would follow alone: batched mapping
is one-by-one mapping, only faster (up to float rounding, which TensorFlow's kernels do
differently at each batch size: tests/test_mapper.py checks that scores agree to 1e-3 relative).
The whole iteration loop is one compiled function, traced once per batch size; z and the
optimizers are reset by assignment, never rebuilt.

Warm start: given an `encoder` E (AnoGAN's warm-start encoder, models/anogan.py), the search
starts at z0 = E(x) instead of a random draw; `steps=(0,)`, allowed only then, is no search at
all: the score is the loss at E(x), one compiled forward pass E -> G -> f per chunk.

Graphs without state (`score_tensors`, `search`, `keyed_initial_z`): the same search as pure
functions of tensors, for any batch size, with z and the Adam moments as loop values instead of
variables and Adam's update written out as Keras 3 computes it (`adam_update`). export_lib saves
them as a SavedModel: concurrent calls share nothing, and every call starts afresh.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

import anogan_tf.models.base as base
from anogan_tf.config import DISTRIBUTIONS, REDUCTIONS, one_of
from anogan_tf.errors import AnoganError
from anogan_tf.nn import losses, memory
from anogan_tf.nn.frozen import FrozenChain
from anogan_tf.nn.precision import network_precision, to_float32


@dataclasses.dataclass
class MappingResult:
  """Per-image results of `LatentMapper.map`; arrays have N rows, one per query image."""

  score: np.ndarray  # (N,) anomaly score: the loss at the final z (divided by ink ** ink_power)
  residual: np.ndarray  # (N,) residual part L_R at the final z
  discrimination: np.ndarray  # (N,) discrimination part L_D at the final z
  z: np.ndarray  # (N, latent_dim) the final z
  generated: np.ndarray  # (N, h, w, c) G(z) in [-1, 1]
  residual_map: np.ndarray  # (N, h, w, c) |x - G(z)|, where the anomaly is
  trajectory: np.ndarray  # (N, iterations) the loss at each iteration, before its update

  def __len__(self):
    return len(self.score)

  @staticmethod
  def concatenate(parts: Sequence["MappingResult"]) -> "MappingResult":
    return MappingResult(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                            for f in dataclasses.fields(MappingResult)})

  def score_result(self) -> base.ScoreResult:
    """The same numbers as the family interface's ScoreResult: reconstruction = G(z*), parts
    residual and discrimination, extras z and (when the search ran) trajectory."""
    extras = {"z": self.z}
    if self.trajectory.shape[1] > 0:
      extras["trajectory"] = self.trajectory
    return base.ScoreResult(score=self.score, reconstruction=self.generated, residual_map=self.residual_map,
                            parts={"residual": self.residual, "discrimination": self.discrimination},
                            extras=extras)


def adam_update(variable, gradient, m, v, iterations, learning_rate: float, beta_1: float, beta_2: float,
                epsilon: float):
  """One step of Keras 3's Adam (`keras.optimizers.Adam.update_step`, no amsgrad, clipping or
  weight decay) as a pure function: returns (variable, m, v) after the step. `iterations` is the
  number of steps this Adam took before (Keras' `optimizer.iterations`: 0 at the first step).
  The ops are Keras' own, in its order, so the numbers are the same to the bit
  (tests/test_export.py checks it against keras.optimizers.Adam)."""
  dtype = variable.dtype
  lr = tf.cast(learning_rate, dtype)
  gradient = tf.cast(gradient, dtype)
  local_step = tf.cast(iterations + 1, dtype)
  beta_1_power = tf.pow(tf.cast(beta_1, dtype), local_step)
  beta_2_power = tf.pow(tf.cast(beta_2, dtype), local_step)
  alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
  m = m + (gradient - m) * (1 - beta_1)
  v = v + (tf.square(gradient) - v) * (1 - beta_2)
  return variable - (m * alpha) / (tf.sqrt(v) + epsilon), m, v


class _BatchState(tf.Module):
  """z and the stage optimizers for one batch size, with the compiled mapping loop."""

  def __init__(self, mapper: "LatentMapper", size: int):
    super().__init__(name=f"latent_mapper_{size}")
    self.mapper = mapper
    self.z = tf.Variable(tf.zeros((size, mapper.latent_dim)), trainable=True, name="z")
    self.optimizers = []
    self.snapshots = []
    for lr in mapper.learning_rates:
      opt = keras.optimizers.Adam(learning_rate=lr, beta_1=mapper.adam_beta_1,
                                  beta_2=mapper.adam_beta_2, epsilon=mapper.adam_epsilon)
      opt.build([self.z])
      self.optimizers.append(opt)
      # Keras 3 optimizer.variables include the learning rate and the iteration count:
      # a reset restores this post-build snapshot rather than zeroing them.
      self.snapshots.append([tf.constant(v.numpy()) for v in opt.variables])
    image_spec = tf.TensorSpec((size,) + mapper.image_shape, tf.float32)
    z_spec = tf.TensorSpec((size, mapper.latent_dim), tf.float32)
    # plain TensorFlow, not rewritten by autograph (the loop is a tf.while_loop): every process
    # would redo the rewriting at its first search
    self.run = tf.function(self._run, input_signature=[image_spec, z_spec], jit_compile=mapper.jit_compile,
                           autograph=False)

  def _run(self, x, z0):
    m = self.mapper
    m.trace_count += 1  # Python side effect: runs once per trace, never per call
    self.z.assign(z0)
    for opt, snapshot in zip(self.optimizers, self.snapshots):
      for variable, value in zip(opt.variables, snapshot):
        variable.assign(value)
    weights = m.frozen_weights()  # G's and f's weights, prepared once per call, outside the loop
    features_x = m.features(x, weights)  # f(x) once per batch
    trajectory = tf.TensorArray(tf.float32, size=sum(m.steps))
    step = tf.constant(0)
    for opt, n in zip(self.optimizers, m.steps):  # the stages, unrolled at trace time
      def iteration(i, step, trajectory, opt=opt):
        with tf.GradientTape(watch_accessed_variables=False) as tape:  # the gradient w.r.t. z only
          tape.watch(self.z)
          loss = m.iteration_loss(x, features_x, self.z, weights)  # (batch,)
          total = tf.reduce_sum(loss)  # summed, not averaged: each image its own problem
        opt.apply_gradients([(tape.gradient(total, self.z), self.z)])
        return i + 1, step + 1, trajectory.write(step, loss)
      _, step, trajectory = tf.while_loop(lambda i, *_: i < n, iteration, (tf.constant(0), step, trajectory))
    return dict(m.result_at(x, features_x, self.z, weights),
                trajectory=tf.transpose(trajectory.stack()))  # (batch, iterations)


class _Forward(tf.Module):
  """The compiled passes of one batch size that run no search: E(x) (the search's start), and the
  result at E(x) (one pass E -> G -> f) or at a given z, with an empty trajectory."""

  def __init__(self, mapper: "LatentMapper", size: int):
    super().__init__(name=f"latent_forward_{size}")
    self.mapper = mapper
    image_spec = tf.TensorSpec((size,) + mapper.image_shape, tf.float32)
    z_spec = tf.TensorSpec((size, mapper.latent_dim), tf.float32)
    compiled = dict(jit_compile=mapper.jit_compile, autograph=False)  # no tensor control flow: as written
    self.encode = tf.function(self._traced(self._encode), input_signature=[image_spec], **compiled)
    self.score_encoded = tf.function(self._traced(lambda x: self._result(x, self._encode(x))),
                                     input_signature=[image_spec], **compiled)
    self.score_at = tf.function(self._traced(self._result), input_signature=[image_spec, z_spec], **compiled)

  def _traced(self, fn):
    def counted(*args):
      self.mapper.trace_count += 1  # Python side effect: runs once per trace, never per call
      return fn(*args)
    return counted

  def _encode(self, x):
    return self.mapper.encoder(x, training=False)

  def _result(self, x, z):
    m = self.mapper
    weights = m.frozen_weights()
    out = m.result_at(x, m.features(x, weights), z, weights)
    return dict(out, trajectory=tf.zeros((tf.shape(x)[0], 0)))  # (batch, 0): no iterations


def activation_floats_per_image(generator, discriminator, feature_layer: str = "act1") -> int:
  """Floats one image's mapping iteration keeps: every layer output of G, and of D up to f
  (`feature_layer`)."""
  return (memory.chain_floats(generator.chain, (generator.latent_dim,))
          + memory.chain_floats(discriminator.chain, generator.image_shape, stop_at=feature_layer))


# The automatic batch of a bfloat16 search stops here: its activations then stay in the CPU's caches
# through the 150 iterations, and `make bench` measures batches of 1024 several times slower per image.
MAX_BFLOAT16_MAPPING_BATCH = 256


def auto_batch_size(generator, discriminator, available_bytes: Optional[int] = None,
                    feature_layer: str = "act1") -> int:
  """The largest power of two up to memory.MAX_AUTO_BATCH (MAX_BFLOAT16_MAPPING_BATCH when the
  networks compute in bfloat16) whose mapping fits in memory.MEMORY_SHARE of the available memory
  (that largest batch when the available memory is unknown)."""
  low = "bfloat16" in (network_precision(generator), network_precision(discriminator))
  largest = MAX_BFLOAT16_MAPPING_BATCH if low else memory.MAX_AUTO_BATCH
  return memory.fit_batch_size(activation_floats_per_image(generator, discriminator, feature_layer), available_bytes,
                               largest)


class LatentMapper(base.Scorer):
  """Finds z* = argmin_z (1 - lam) L_R(z) + lam L_D(z) for each query image; the final loss is
  its anomaly score. Defaults are seed 000: lam 0.7, f = the discriminator's first conv after
  its LeakyReLU, 50 Adam steps at 1e-1 then 100 at 1e-2 on a second Adam, z0 ~ U(-1, 1).

  `feature_layer` names the discriminator layer f() reads (seed 000: act1; the mapping's
  setting, not the discriminator's); `reduction` is "mean" or "sum";
  `z_init` is "uniform" (U(-1, 1)) or "normal" (N(0, z_init_std)). Unknown values are errors.

  G and D are frozen and run in inference mode. `seed` fixes the stream of initial z, drawn
  row by row, so mapping images one at a time or all at once draws the same z0 per image.

  `encoder` (images -> z (N, latent_dim), e.g. AnoGAN's warm-start encoder) replaces the random
  start with z0 = E(x), run in inference mode; with it, and only with it, `steps=(0,)` is allowed:
  no search, the score is the loss at E(x).
  """

  def __init__(self, generator, discriminator, lam: float = 0.7,
               steps: Sequence[int] = (50, 100), learning_rates: Sequence[float] = (1e-1, 1e-2),
               reduction: str = "mean", z_init: str = "uniform", z_init_std: float = 1.0,
               adam_beta_1: float = 0.9, adam_beta_2: float = 0.999, adam_epsilon: float = 1e-8,
               batch_size: int = 0, seed: int = 0, jit_compile: bool = False,
               feature_layer: str = "act1", encoder=None, ink_power: float = 0.0):
    if len(steps) != len(learning_rates) or not steps:
      raise AnoganError("steps and learning_rates need the same number of stages (at least one)")
    if any(int(s) < 1 for s in steps) and not (encoder is not None and tuple(int(s) for s in steps) == (0,)):
      raise AnoganError(f"steps={list(steps)}; every stage needs at least one iteration (steps=[0], no search, "
                        "only with an encoder to start from)")
    if encoder is not None and (int(encoder.latent_dim) != int(generator.latent_dim)
                                or tuple(encoder.image_shape) != tuple(generator.image_shape)):
      raise AnoganError(f"the encoder maps {tuple(encoder.image_shape)} images to {encoder.latent_dim} latents but the "
                        f"generator maps {generator.latent_dim} latents to {tuple(generator.image_shape)} images; "
                        "train the encoder on this GAN (--encoder_epochs)")
    one_of(reduction, REDUCTIONS, "reduction")
    one_of(z_init, DISTRIBUTIONS, "z_init")
    discriminator.check_feature_layer(feature_layer)
    self.feature_layer = feature_layer
    self.generator = generator
    self.discriminator = discriminator
    self.encoder = encoder
    self.lam = float(lam)
    self.ink_power = base.checked_ink_power(ink_power)
    self.steps = tuple(int(s) for s in steps)
    self.learning_rates = tuple(float(lr) for lr in learning_rates)
    self.reduction = reduction
    self.z_init = z_init
    self.z_init_std = float(z_init_std)
    self.adam_beta_1, self.adam_beta_2, self.adam_epsilon = adam_beta_1, adam_beta_2, adam_epsilon
    if int(batch_size) < 0:
      raise AnoganError(f"batch_size={batch_size}; use a positive number, or 0 to choose it from the available memory")
    self.batch_size = int(batch_size) or auto_batch_size(generator, discriminator, feature_layer=self.feature_layer)
    self.jit_compile = bool(jit_compile)  # XLA; measured slower on CPU (see make bench)
    self.latent_dim = int(generator.latent_dim)
    self.example_shape = tuple(generator.image_shape)
    self.trace_count = 0
    self.seed = int(seed)
    self._rng = np.random.default_rng(seed)
    self._states = {}
    self._forwards = {}
    # G, and D up to f, run frozen (nn.frozen): weights read, cast and BatchNorm-folded once per search
    self._frozen_g = FrozenChain(generator.chain) if hasattr(generator, "chain") else None
    self._frozen_f = (FrozenChain(discriminator.chain, stop_at=feature_layer)
                      if hasattr(discriminator, "chain") else None)

  def initial_z(self, n: int) -> np.ndarray:
    """Draws the next n initial z (n, latent_dim) from the mapper's seeded stream."""
    shape = (n, self.latent_dim)
    if self.z_init == "normal":
      return (self._rng.standard_normal(shape) * self.z_init_std).astype(np.float32)
    return self._rng.uniform(-1.0, 1.0, shape).astype(np.float32)

  def check_images(self, images) -> np.ndarray:
    return base.check_images(images, self.image_shape)

  @property
  def takes_initial_z(self) -> bool:
    """A search from a random start takes its start as an input (keyed or given); with an encoder
    it starts at E(x), computed inside; with no iterations there is no search to start."""
    return sum(self.steps) > 0 and self.encoder is None

  def export_metadata(self) -> dict:
    if sum(self.steps) == 0:
      return {}
    return {"latent_dim": int(self.latent_dim), "seed": self.seed,
            "start": "encoder" if self.encoder is not None else "keyed"}

  def settings(self) -> dict:
    """The mapping settings in use, as metrics.json records them (the Adam betas are this
    mapper's, not training's --adam_beta_1/2)."""
    return {"initial_z": "random" if self.encoder is None else "encoder",
            "lam": self.lam, "map_steps": list(self.steps), "map_lrs": list(self.learning_rates),
            "feature_layer": self.feature_layer, "map_reduction": self.reduction, "z_init": self.z_init,
            "z_init_std": self.z_init_std, "map_batch_size": self.batch_size,
            "map_adam_beta_1": self.adam_beta_1, "map_adam_beta_2": self.adam_beta_2,
            "map_adam_epsilon": self.adam_epsilon, "map_restarts": 1, **losses.ink_setting(self.ink_power)}

  def score(self, images, initial_z=None) -> base.ScoreResult:
    """`map(images, initial_z)` as the family interface's ScoreResult."""
    return base.ScoreResult.concatenate(list(self.score_chunks(images, initial_z)))

  def score_chunks(self, images, initial_z=None) -> Iterator[base.ScoreResult]:
    """`map_chunks` as ScoreResults, one per chunk."""
    for part in self.map_chunks(images, initial_z):
      yield part.score_result()

  def frozen_weights(self) -> tuple:
    """(G's, f's) weights as the frozen chains run them (nn.frozen.FrozenChain.weights): read from
    the variables now, so a search calls it once, before its loop."""
    return (self._frozen_g.weights() if self._frozen_g else [], self._frozen_f.weights() if self._frozen_f else [])

  def generate(self, z, weights=None):
    """G(z) in inference mode, float32; on `weights` (frozen_weights()) when G is a chain of layers."""
    if self._frozen_g is None:
      return to_float32(self.generator(z, training=False))
    return self._frozen_g(z, weights[0] if weights else self._frozen_g.weights())  # G's own only

  def features(self, x, weights=None):
    """f(x) (batch, features), D in inference mode up to `feature_layer`, float32; on `weights`
    (frozen_weights()) when D is a chain of layers."""
    if self._frozen_f is None:
      return self.discriminator.features(x, training=False, layer=self.feature_layer)
    f = self._frozen_f(x, weights[1] if weights else self._frozen_f.weights())  # f's own only
    return tf.reshape(f, (tf.shape(f)[0], -1))

  def loss_parts(self, x, features_x, z, weights=None):
    """(G(z), residual, discrimination) for images x and their features f(x), each (batch, ...)."""
    weights = weights or self.frozen_weights()
    if self._frozen_g is None:
      generated = low = self.generate(z, weights)
    else:  # f reads G(z) as G computed it (bfloat16 stays bfloat16: the float32 copy is for the residual)
      low = self._frozen_g.run(z, weights[0])
      generated = to_float32(low)
    residual = losses.residual_loss(x, generated, self.reduction)
    discrimination = losses.discrimination_loss(features_x, self.features(low, weights), self.reduction)
    return generated, residual, discrimination

  def iteration_loss(self, x, features_x, z, weights=None):
    """The loss the search minimises, per image (batch,): (1 - lam) L_R + lam L_D at z."""
    _, residual, discrimination = self.loss_parts(x, features_x, z, weights)
    return losses.anomaly_score(residual, discrimination, self.lam)

  def result_at(self, x, features_x, z, weights=None) -> dict:
    """The result at z (no trajectory): score (the loss the search minimises, divided by the
    image's ink ** ink_power), residual, discrimination, z, generated, residual_map."""
    generated, residual, discrimination = self.loss_parts(x, features_x, z, weights)
    score = losses.ink_normalised(losses.anomaly_score(residual, discrimination, self.lam), x, self.ink_power)
    return dict(score=score,
                residual=residual, discrimination=discrimination, z=tf.identity(z),
                generated=generated, residual_map=tf.abs(x - generated))

  # --- the search as graphs without state (export_lib saves them)

  def search(self, x, z0) -> dict:
    """The search from z0 as a pure function of tensors x (batch, h, w, c) and z0
    (batch, latent_dim), any batch size: the stages of `steps` and `learning_rates`, each a fresh
    Adam (`adam_update`, moments from zero), on the loss summed over the batch. The same steps
    as the compiled loop `map` runs, with z and the moments as loop values instead of
    variables. Returns `result_at` the final z and the trajectory (batch, iterations)."""
    weights = self.frozen_weights()  # once, outside the loops
    features_x = self.features(x, weights)  # f(x) once
    z, trajectories = z0, []
    for learning_rate, n in zip(self.learning_rates, self.steps):
      z, trajectory = self._search_stage(x, features_x, z, learning_rate, n, weights)
      trajectories.append(trajectory)
    return dict(self.result_at(x, features_x, z, weights), trajectory=tf.concat(trajectories, axis=1))

  def _search_stage(self, x, features_x, z, learning_rate: float, n: int, weights):
    def body(i, z, m, v, trajectory):
      with tf.GradientTape(watch_accessed_variables=False) as tape:  # the gradient w.r.t. z only
        tape.watch(z)
        loss = self.iteration_loss(x, features_x, z, weights)  # (batch,)
        total = tf.reduce_sum(loss)  # summed, not averaged: each image its own problem
      z, m, v = adam_update(z, tape.gradient(total, z), m, v, i, learning_rate,
                            self.adam_beta_1, self.adam_beta_2, self.adam_epsilon)
      return i + 1, z, m, v, trajectory.write(i, loss)

    zeros = tf.zeros_like(z)
    start = (tf.constant(0), z, zeros, zeros, tf.TensorArray(tf.float32, size=n))
    _, z, _, _, trajectory = tf.while_loop(lambda i, *_: i < n, body, start)
    return z, tf.transpose(trajectory.stack())  # (batch, n)

  def keyed_initial_z(self, x):
    """z0 (batch, latent_dim) for images x, drawn from the `z_init` distribution by a stateless
    generator keyed by `seed` and each image's bytes (its farmhash fingerprint): an image starts
    from the same z whatever batch it comes in and wherever in it. The graph's stand-in for
    `initial_z`, whose NumPy stream a SavedModel cannot run (so the draws differ from it)."""
    flat = tf.reshape(x, (tf.shape(x)[0], -1))  # (batch, h*w*c)
    keys = tf.bitcast(tf.reshape(tf.fingerprint(flat), (-1, 2, 4)), tf.int32)  # (batch, 2): 8 bytes per image

    def draw(key):
      key = tf.random.experimental.stateless_fold_in(key, self.seed)
      if self.z_init == "normal":
        return tf.random.stateless_normal((self.latent_dim,), key) * self.z_init_std
      return tf.random.stateless_uniform((self.latent_dim,), key, minval=-1.0, maxval=1.0)

    return tf.map_fn(draw, keys, fn_output_signature=tf.TensorSpec((self.latent_dim,), tf.float32))

  def score_tensors(self, x, initial_z=None) -> base.ScoreResult:
    """`score` as one graph (base.Scorer.score_tensors): the search from `initial_z` (batch,
    latent_dim), else from E(x) with an encoder, else from `keyed_initial_z(x)`; with steps=(0,)
    the result at E(x). extras: z, and for a search trajectory and initial_z (where it started)."""
    search = sum(self.steps) > 0
    if initial_z is None:
      initial_z = self.encoder(x, training=False) if self.encoder is not None else self.keyed_initial_z(x)
    if search:
      out = self.search(x, initial_z)
    else:
      weights = self.frozen_weights()
      out = self.result_at(x, self.features(x, weights), initial_z, weights)
    extras = {"z": out["z"]}
    if search:
      extras.update(trajectory=out["trajectory"], initial_z=tf.identity(initial_z))
    return base.ScoreResult(score=out["score"], reconstruction=out["generated"], residual_map=out["residual_map"],
                            parts={"residual": out["residual"], "discrimination": out["discrimination"]},
                            extras=extras)

  def _state(self, size: int) -> _BatchState:
    if size not in self._states:
      self._states[size] = _BatchState(self, size)
    return self._states[size]

  def _forward(self, size: int) -> _Forward:
    if size not in self._forwards:
      self._forwards[size] = _Forward(self, size)
    return self._forwards[size]

  def map(self, images, initial_z=None,
          on_chunk: Optional[Callable[[int], None]] = None) -> MappingResult:
    """Maps images (N, h, w, c) in [-1, 1] to the latent space, `batch_size` at a time.

    initial_z (N, latent_dim) replaces the start (a random draw, or E(x) with an encoder).
    on_chunk(n) is called after each chunk of n images (for progress bars).
    """
    parts = []
    for part in self.map_chunks(images, initial_z):
      parts.append(part)
      if on_chunk:
        on_chunk(len(part))
    return MappingResult.concatenate(parts)

  def map_chunks(self, images, initial_z=None) -> Iterator[MappingResult]:
    """Like `map`, one MappingResult per chunk, so memory stays flat for any number of images.

    Every chunk has the same compiled shape (the last one is padded), so a whole test split
    runs on one trace.
    """
    x = self.check_images(images)
    n = len(x)
    if initial_z is not None:
      z0 = np.asarray(initial_z, np.float32)
      if z0.shape != (n, self.latent_dim):
        raise AnoganError(f"initial_z has shape {z0.shape}; expected ({n}, {self.latent_dim})")
    elif self.encoder is None:
      z0 = self.initial_z(n)
    else:
      z0 = None  # E(x), chunk by chunk
    size = min(self.batch_size, n)
    search = sum(self.steps) > 0
    state = self._state(size) if search else None
    forward = self._forward(size) if z0 is None or not search else None
    for start in range(0, n, size):
      xb = x[start:start + size]
      zb = None if z0 is None else z0[start:start + size]
      real = len(xb)
      if real < size:  # pad the last chunk: rows are independent, so padding changes nothing
        xb = np.concatenate([xb, np.zeros((size - real,) + xb.shape[1:], np.float32)])
        zb = None if zb is None else np.concatenate([zb, np.zeros((size - real, self.latent_dim), np.float32)])
      xb = tf.constant(xb)
      if not search:
        out = forward.score_encoded(xb) if zb is None else forward.score_at(xb, tf.constant(zb))
      else:
        out = state.run(xb, forward.encode(xb) if zb is None else tf.constant(zb))
      yield MappingResult(**{k: v.numpy()[:real] for k, v in out.items()})
