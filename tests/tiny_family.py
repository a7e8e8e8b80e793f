"""A throwaway model family whose examples are not images, for tests/test_example_shapes.py: a
dense autoencoder on examples of any shape, series (T, features) or clips (T, h, w, c). It lives
here, not in the package, and is registered by the test the way a new family is (one line in
models.FAMILIES), so it goes through the same generic code as the package's families."""

from __future__ import annotations

import math
import types

import keras
import numpy as np
import tensorflow as tf

from anogan_tf.models import base


@keras.saving.register_keras_serializable(package="anogan_tf_tests")
class DenseAutoencoder(keras.Model):
  """x (N,) + shape -> x' (N,) + shape in (-1, 1), through a bottleneck of `code` units."""

  def __init__(self, shape=(12, 3), code=4, **kwargs):
    super().__init__(**kwargs)
    self.shape_, self.code = tuple(int(s) for s in shape), int(code)
    size = math.prod(self.shape_)
    self.encode = keras.layers.Dense(self.code, activation="tanh")
    self.decode = keras.layers.Dense(size, activation="tanh")
    self.build((None,) + self.shape_)

  def build(self, input_shape):
    size = math.prod(self.shape_)
    self.encode.build((None, size))
    self.decode.build((None, self.code))
    self.built = True

  def call(self, x, training=False):
    flat = tf.reshape(x, (-1, math.prod(self.shape_)))
    return tf.reshape(self.decode(self.encode(flat)), (-1,) + self.shape_)

  def get_config(self):
    return {**super().get_config(), "shape": list(self.shape_), "code": self.code}


class Trainer(base.Trainer):
  loss_names = ("loss",)

  def __init__(self, config, networks):
    super().__init__(name="tiny_trainer")
    self.model = networks["autoencoder"]
    self.optimizer = keras.optimizers.Adam(learning_rate=config.lr)
    self.optimizer.build(self.model.trainable_variables)

  def train_step(self, x, noise, phase):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.abs(x - self.model(x, training=True)))
    variables = self.model.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return {"loss": loss}

  def checkpoint_items(self):
    return {"optimizer": self.optimizer}


class Scorer(base.Scorer):
  """Mean |x - x'| per example; the residual map has the example's shape."""

  def __init__(self, model, batch_size):
    self.model, self.batch_size = model, int(batch_size)
    self.example_shape = model.shape_
    self._run = tf.function(lambda x: (lambda r: (r.score, r.reconstruction, r.residual_map))(self.score_tensors(x)))

  def score_tensors(self, x) -> base.ScoreResult:
    reconstruction = self.model(x, training=False)
    residual = tf.abs(x - reconstruction)
    score = tf.reduce_mean(tf.reshape(residual, (tf.shape(x)[0], -1)), axis=1)
    return base.ScoreResult(score=score, reconstruction=reconstruction, residual_map=residual)

  def score_chunks(self, examples):
    x = base.check_images(examples, self.example_shape)
    for start in range(0, len(x), self.batch_size):
      chunk = x[start:start + self.batch_size]
      n = len(chunk)
      padded = np.concatenate([chunk, np.zeros((self.batch_size - n,) + self.example_shape, np.float32)])
      score, reconstruction, residual = (t.numpy()[:n] for t in self._run(tf.constant(padded)))
      yield base.ScoreResult(score=score, reconstruction=reconstruction, residual_map=residual)

  def settings(self):
    return {}


def family(name: str, shape) -> types.ModuleType:
  """The family module `name` for examples of `shape`: what models/base.py asks of a family."""
  module = types.ModuleType(name)
  module.NAME = name
  module.NETWORKS = ("autoencoder",)
  module.example_shape = lambda config: tuple(shape)
  module.build_networks = lambda config: {"autoencoder": DenseAutoencoder(shape, name="autoencoder")}
  module.make_trainer = Trainer
  module.make_scorer = lambda config, networks, **overrides: Scorer(networks["autoencoder"],
                                                                   config.map_batch_size or 16)
  module.noise = lambda rng, n, config: np.zeros((n, 0), np.float32)
  module.sample = lambda networks, noise: None
  return module
