"""nn.frozen and the LatentMapper's use of it: the same numbers as the layers in inference mode, and
a search loop that reads no network weight and runs no BatchNorm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anogan_tf import Discriminator, Generator, LatentMapper
from anogan_tf.nn import losses, precision
from anogan_tf.nn.frozen import FrozenChain
from anogan_tf.nn.layers import leaky_relu, subpixel_phases, turned
from anogan_tf.nn.networks import build_chain

BF16_EPS = 2.0**-8  # bfloat16's relative rounding (8-bit mantissa)


def _trained_like(model, seed=0):
  """Moving statistics, gamma and beta away from their initial values, so folding them is not a no-op
  (`model`: a network, or a list of layers)."""
  rng = np.random.default_rng(seed)
  for layer in model if isinstance(model, list) else model._flatten_layers(include_self=False):
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.moving_mean.shape[0]
      layer.moving_mean.assign(rng.normal(0, 0.5, n))
      layer.moving_variance.assign(rng.uniform(0.3, 2.0, n))
      layer.gamma.assign(rng.uniform(0.5, 1.5, n))
      layer.beta.assign(rng.normal(0, 0.3, n))
  return model


def _networks(precision_name, g_kwargs=None, d_kwargs=None, seed=3):
  keras.utils.set_random_seed(seed)
  g, d = precision.built(precision_name, lambda: (Generator(**(g_kwargs or {})), Discriminator(**(d_kwargs or {}))))
  return _trained_like(g), _trained_like(d, seed=1)


GENERATORS = [{}, {"dense_norm": "feature", "dense_activation": "relu"}, {"upsampling": "nearest", "activation": "relu"}]
DISCRIMINATORS = [({}, "act1"), ({"batchnorm": True, "dropout": 0.3}, "flatten"), ({"spectral_norm": True}, "act2")]


@pytest.mark.parametrize("g_kwargs", GENERATORS)
def test_the_frozen_generator_is_the_generator_in_inference_mode_float32(g_kwargs):
  g, _ = _networks("float32", g_kwargs)
  frozen = FrozenChain(g.chain)
  assert not any(kind == "layer" and isinstance(layer, keras.layers.BatchNormalization)
                 for kind, layer, _, _ in frozen.steps)  # every BatchNorm folded or run as scale and shift
  z = np.random.default_rng(0).uniform(-1, 1, (6, 50)).astype(np.float32)
  np.testing.assert_allclose(frozen(z, frozen.weights()).numpy(), g(z, training=False).numpy(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("d_kwargs, layer", DISCRIMINATORS)
def test_the_frozen_features_are_the_discriminators_float32(d_kwargs, layer):
  _, d = _networks("float32", d_kwargs=d_kwargs)
  frozen = FrozenChain(d.chain, stop_at=layer)
  x = np.random.default_rng(0).uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
  got = tf.reshape(frozen(x, frozen.weights()), (6, -1)).numpy()
  np.testing.assert_allclose(got, d.features(x, layer=layer).numpy(), rtol=1e-5, atol=2e-6)


def test_the_frozen_generator_in_bfloat16_is_within_bfloat16_rounding():
  g, _ = _networks("bfloat16")
  frozen = FrozenChain(g.chain)
  weights = frozen.weights()
  assert {w.dtype for w in weights} == {tf.bfloat16}  # cast once, here, not at every call
  z = np.random.default_rng(0).uniform(-1, 1, (6, 50)).astype(np.float32)
  got, want = frozen(z, weights).numpy(), g(z, training=False).numpy()
  assert got.dtype == np.float32
  # Both round every layer to bfloat16 (W * s once here, W then the normalisation there): a few
  # units of bfloat16's rounding at the output's scale (tanh: |y| < 1), four layers deep.
  np.testing.assert_allclose(got, want, atol=8 * BF16_EPS)
  assert np.abs(got - want).mean() < BF16_EPS


def test_bfloat16_runs_transposed_convolutions_as_convolutions_float32_as_they_are():
  g32, _ = _networks("float32")
  g16, _ = _networks("bfloat16")
  kinds = lambda g: [kind for kind, layer, _, _ in FrozenChain(g.chain).steps
                     if isinstance(layer, keras.layers.Conv2DTranspose)]
  assert kinds(g32) == ["conv_transpose"] * 3
  assert kinds(g16) == ["subpixel", "subpixel", "flipped"]  # stride 2, stride 2, stride 1 (the output layer)


def _odd_chain(precision_name):
  """Transposed convolutions in every form, with what may and may not come between a sub-pixel step
  and its interleave: an activation of its own, a BatchNorm it cannot fold (after a relu), a
  LeakyReLU, a 4x4 kernel (no sub-pixel form), a stride-1 one and a sigmoid."""
  def build():
    chain = [keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu"),
             keras.layers.BatchNormalization(), keras.layers.LeakyReLU(negative_slope=0.2),
             keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same"), keras.layers.LeakyReLU(negative_slope=0.2),
             keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same"), keras.layers.ReLU(),
             keras.layers.Conv2DTranspose(2, 5, strides=1, padding="same"), keras.layers.Activation("sigmoid")]
    build_chain(chain, (None, 3, 3, 4))
    return chain
  keras.utils.set_random_seed(7)
  with precision.policy(precision_name):
    chain = build()
  _trained_like(chain)
  return chain


def _layers(chain, x):
  for layer in chain:
    x = layer(x, training=False) if isinstance(layer, keras.layers.BatchNormalization) else layer(x)
  return precision.to_float32(x)


def _input_gradient(fn, x):
  """d sum(fn(x)^2) / dx."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
    product = tf.reduce_sum(y * y)
  return tape.gradient(product, x).numpy()


def test_a_bfloat16_chain_of_every_transposed_form_computes_the_float32_layers_function():
  chain32, chain16 = _odd_chain("float32"), _odd_chain("bfloat16")
  for a, b in zip(chain32, chain16):
    for u, v in zip(a.weights, b.weights):
      v.assign(u)  # the same float32 weights
  frozen = FrozenChain(chain16)
  assert [kind for kind, *_ in frozen.steps if kind != "layer"] == [
      "subpixel", "batchnorm", "subpixel", "conv_transpose", "flipped"]
  weights = frozen.weights()
  x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (5, 3, 3, 4)).astype(np.float32))
  got, want = frozen(x, weights).numpy(), _layers(chain32, x).numpy()
  assert got.shape == want.shape == (5, 24, 24, 2)
  # every layer rounds to bfloat16 (relative 2^-8), five convolutions deep, through a sigmoid
  # (|y| < 1): a few units of that rounding; a phase misplaced or a kernel flipped the wrong way
  # would be off by the outputs' own size
  np.testing.assert_allclose(got, want, atol=8 * BF16_EPS)
  assert np.abs(got - want).mean() < BF16_EPS
  # The input gradient through every form (custom gradients included) sums products of opposite
  # signs, so bfloat16's rounding shows in it relatively more: no more than in the gradient of the
  # bfloat16 layers themselves (a wrong gradient would be off by its own size).
  want_grad = _input_gradient(lambda x: _layers(chain32, x), x)
  layers_error = np.linalg.norm(_input_gradient(lambda x: _layers(chain16, x), x) - want_grad)
  assert 0 < layers_error < 0.3 * np.linalg.norm(want_grad)
  assert np.linalg.norm(_input_gradient(lambda x: frozen(x, weights), x) - want_grad) < 2 * layers_error


def test_the_phases_gradient_is_the_padded_convolutions():
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(3, 5, 6, 4)).astype(np.float32))
  kernel = tf.constant(rng.normal(size=(2, 2, 4, 12)).astype(np.float32))
  dy = tf.constant(rng.normal(size=(3, 5, 6, 12)).astype(np.float32))
  results = []
  for fn in (lambda x, k: subpixel_phases(x, k, turned(k)),
             lambda x, k: tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]]), k, 1, "VALID")):
    with tf.GradientTape() as tape:
      tape.watch([x, kernel])
      y = fn(x, kernel)
    results.append([y.numpy()] + [g.numpy() for g in tape.gradient(y, [x, kernel], output_gradients=dy)])
  for ours, tfs in zip(*results):  # the same sums of products, in another order: float32 rounding
    np.testing.assert_allclose(ours, tfs, rtol=1e-4, atol=1e-4)


def test_leaky_relu_has_the_gradient_of_tf_nn_leaky_relu():
  x = tf.constant(np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32))
  for fn in (leaky_relu, tf.nn.leaky_relu):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x, 0.2)
      product = y * x
    grad = tape.gradient(product, x).numpy()  # d(y * x)/dx = y'(x) x + y
    if fn is leaky_relu:
      ours_y, ours_grad = y.numpy(), grad
  np.testing.assert_array_equal(ours_y, y.numpy())
  np.testing.assert_array_equal(ours_grad, grad)


def _reference_search(g, d, x, z0, steps, lrs, lam=0.7):
  """The search as the layers and Keras' Adam run it, eagerly: what the mapper computed before it ran G and f frozen."""
  z = tf.Variable(z0)
  fx = d.features(x, training=False)
  trajectory = []
  for lr, n in zip(lrs, steps):
    opt = keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8)
    for _ in range(n):
      with tf.GradientTape() as tape:
        gz = g(z, training=False)
        loss = losses.anomaly_score(losses.residual_loss(x, gz), losses.discrimination_loss(fx, d.features(gz)), lam)
        total = tf.reduce_sum(loss)
      opt.apply_gradients([(tape.gradient(total, z), z)])
      trajectory.append(loss.numpy())
  gz = g(z, training=False)
  score = losses.anomaly_score(losses.residual_loss(x, gz), losses.discrimination_loss(fx, d.features(gz)), lam)
  return score.numpy(), np.stack(trajectory, axis=1), z.numpy()


def _queries(g, n=6):
  rng = np.random.default_rng(4)
  on = g(rng.uniform(-1, 1, (n // 2, 50)).astype(np.float32), training=False).numpy()
  return np.concatenate([on, rng.uniform(-1, 1, (n - n // 2, 28, 28, 1)).astype(np.float32)])


def test_float32_mapping_is_the_layers_search():
  g, d = _networks("float32")
  x = _queries(g)
  z0 = np.random.default_rng(5).uniform(-1, 1, (len(x), 50)).astype(np.float32)
  result = LatentMapper(g, d, steps=(4, 3), batch_size=len(x)).map(x, initial_z=z0)
  score, trajectory, z = _reference_search(g, d, x, z0, (4, 3), (1e-1, 1e-2))
  # Folding BatchNorm into the kernels and the compiled graph's kernels round differently from the
  # eager layers: a few float32 ulps per step, carried by 7 Adam steps.
  np.testing.assert_allclose(result.trajectory, trajectory, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(result.score, score, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(result.z, z, atol=1e-4)


def test_bfloat16_mapping_is_close_to_float32():
  (g32, d32), (g16, d16) = _networks("float32"), _networks("bfloat16")
  for a, b in zip(g32.weights + d32.weights, g16.weights + d16.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same float32 weights
  x = _queries(g32)
  z0 = np.random.default_rng(5).uniform(-1, 1, (len(x), 50)).astype(np.float32)
  full = LatentMapper(g32, d32, steps=(4, 3), batch_size=len(x)).map(x, initial_z=z0)
  low = LatentMapper(g16, d16, steps=(4, 3), batch_size=len(x)).map(x, initial_z=z0)
  # Scores are means over 784 pixels and 3,136 features of terms each rounded to bfloat16
  # (relative 2^-8) a few layers deep; the search then moves z by Adam steps of a fixed size, so
  # the scores differ by a few units of that rounding, not more.
  np.testing.assert_allclose(low.score, full.score, rtol=8 * BF16_EPS)
  np.testing.assert_allclose(low.trajectory[:, 0], full.trajectory[:, 0], rtol=4 * BF16_EPS)


def _loop_bodies(mapper, size):
  graph = mapper._state(size).run.get_concrete_function().graph.as_graph_def()
  functions = {f.signature.name: f for f in graph.library.function}
  bodies = set()
  for f in list(graph.library.function) + [graph]:
    for node in getattr(f, "node_def", None) or getattr(f, "node", []):
      if node.op in ("While", "StatelessWhile"):
        bodies.add(node.attr["body"].func.name)
  return [functions[name] for name in bodies], graph


@pytest.mark.parametrize("precision_name", ["float32", "bfloat16"])
def test_the_search_loop_reads_no_network_weight_and_runs_no_batchnorm(precision_name):
  g, d = _networks(precision_name)
  mapper = LatentMapper(g, d, steps=(2, 2), batch_size=2)
  mapper.map(_queries(g, 2))
  bodies, graph = _loop_bodies(mapper, 2)
  assert len(bodies) == 2  # one loop per stage
  ops = [node.op for f in graph.library.function for node in f.node_def] + [node.op for node in graph.node]
  assert not [op for op in ops if "BatchNorm" in op]
  for body in bodies:
    body_ops = [node.op for node in body.node_def]
    # reads in the loop: z (the gradient's source and the update) and the stage's Adam (iterations,
    # learning rate, two moments); none of G's or D's 23 variables
    assert body_ops.count("ReadVariableOp") <= 8, body_ops.count("ReadVariableOp")
