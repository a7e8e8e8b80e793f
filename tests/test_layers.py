"""anogan_tf/layers.py: the fast layers and ops give Keras' (or TensorFlow's) numbers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anogan_tf.nn.layers import (
  FusedBatchNormalization,
  SubpixelGradientConv2D,
  conv2d_transpose_subpixel,
  subpixel_kernel,
  transpose_form,
  transposed_convolution,
  upsampling,
)


@pytest.mark.parametrize("hw, c_in, c_out", [(7, 32, 16), (14, 16, 8), (14, 16, 1), (5, 3, 2)])
def test_subpixel_form_equals_conv2d_transpose(hw, c_in, c_out):
  rng = np.random.default_rng(hw + c_in + c_out)
  x = tf.constant(rng.standard_normal((3, hw, hw, c_in)).astype(np.float32))
  kernel = tf.constant(rng.standard_normal((3, 3, c_out, c_in)).astype(np.float32))
  expected = tf.nn.conv2d_transpose(x, kernel, (3, 2 * hw, 2 * hw, c_out), 2, "SAME")
  got = conv2d_transpose_subpixel(x, subpixel_kernel(kernel))
  np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)
  assert np.abs(expected.numpy()).max() > 1  # not a trivially zero comparison


def _bn_pair(shape, momentum=0.9):
  """A FusedBatchNormalization and a keras BatchNormalization with the same non-trivial weights."""
  rng = np.random.default_rng(4)
  fused, plain = FusedBatchNormalization(momentum=momentum), keras.layers.BatchNormalization(momentum=momentum)
  for layer in (fused, plain):
    layer.build(shape)
  channels = shape[-1]
  values = [rng.uniform(0.5, 2.0, channels), rng.normal(0, 1, channels),  # gamma, beta
            rng.normal(0, 1, channels), rng.uniform(0.5, 2.0, channels)]  # moving mean, variance
  for layer in (fused, plain):
    assert [w.name for w in layer.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert len(layer.weights) == len(values)
    for weight, value in zip(layer.weights, values):
      weight.assign(value.astype(np.float32))
  return fused, plain, values


def _outputs_and_gradients(layer, x, dy, training):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer(x, training=training)
  grads = tape.gradient(y, [x, layer.gamma, layer.beta], output_gradients=dy)
  return [y.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("training", [False, True])
def test_fused_batchnorm_matches_keras_batchnorm(training):
  rng = np.random.default_rng(5)
  shape = (6, 5, 4, 3)
  x = tf.constant(rng.normal(1.5, 2.0, shape).astype(np.float32))
  dy = tf.constant(rng.normal(0, 1, shape).astype(np.float32))
  fused, plain, (_, _, mean0, var0) = _bn_pair(shape)
  got = _outputs_and_gradients(fused, x, dy, training)
  want = _outputs_and_gradients(plain, x, dy, training)
  assert len(got) == len(want) == 4
  for name, a, b in zip(("output", "d/dx", "d/dgamma", "d/dbeta"), got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
  if not training:
    np.testing.assert_array_equal(fused.moving_mean.numpy(), mean0.astype(np.float32))
    np.testing.assert_array_equal(fused.moving_variance.numpy(), var0.astype(np.float32))
    return
  # Moving statistics: TF1's fused layer averaged in the Bessel-corrected batch variance.
  n = shape[0] * shape[1] * shape[2]
  batch_mean, batch_var = x.numpy().mean(axis=(0, 1, 2)), x.numpy().var(axis=(0, 1, 2))
  np.testing.assert_allclose(fused.moving_mean.numpy(), 0.9 * mean0 + 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fused.moving_variance.numpy(), 0.9 * var0 + 0.1 * batch_var * n / (n - 1),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(plain.moving_variance.numpy(), 0.9 * var0 + 0.1 * batch_var, rtol=1e-5, atol=1e-6)


def test_fused_batchnorm_runs_keras_batchnorm_where_the_fused_kernel_does_not_apply():
  x = tf.constant(np.random.default_rng(6).normal(0, 1, (8, 3)).astype(np.float32))  # 2-D
  fused, plain, _ = _bn_pair(x.shape)
  np.testing.assert_array_equal(fused(x, training=True).numpy(), plain(x, training=True).numpy())
  np.testing.assert_array_equal(fused.moving_variance.numpy(), plain.moving_variance.numpy())


@pytest.mark.parametrize("shape", [(5, 28, 28, 1), (2, 32, 32, 3), (3, 7, 7, 2)])  # the last: odd, plain Conv2D
def test_subpixel_gradient_conv_equals_keras_conv2d(shape):
  rng = np.random.default_rng(shape[1])
  x = tf.constant(rng.uniform(-1, 1, shape).astype(np.float32))
  ours, plain = SubpixelGradientConv2D(16, 3, strides=2, padding="same"), keras.layers.Conv2D(16, 3, strides=2, padding="same")
  for layer in (ours, plain):
    layer.build(shape)
  assert len(plain.weights) == len(ours.weights) == 2
  for a, b in zip(plain.weights, ours.weights):
    a.assign(b + 0.1)  # non-zero bias too
    b.assign(b + 0.1)
  dy = tf.constant(rng.normal(size=plain.compute_output_shape(shape)).astype(np.float32))

  def outputs_and_gradients(layer):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
    return [y] + tape.gradient(y, [x, layer.kernel, layer.bias], output_gradients=dy)

  got, want = outputs_and_gradients(ours), outputs_and_gradients(plain)
  assert len(got) == len(want) == 4
  for name, a, b in zip(("output", "d/dx", "d/dkernel", "d/dbias"), got, want):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
  assert np.abs(outputs_and_gradients(plain)[1].numpy()).max() > 0.1


def test_registered_names_are_kept_for_saved_models():
  # .keras files saved when these layers lived in networks.py name them so.
  assert keras.saving.get_registered_object("anogan_tf>FusedBatchNormalization") is FusedBatchNormalization
  assert keras.saving.get_registered_object("anogan_tf>SubpixelGradientConv2D") is SubpixelGradientConv2D


def test_the_networks_leaky_relu_gradient_reads_its_output():
  """D's gradient, as training takes it: every LeakyReluGrad reads the LeakyRelu's output, so the
  convolution's biased output has one reader and Grappler's remapper can fuse it (reading the
  input, the remapper failed on the training loop and left the whole graph unfused)."""
  from anogan_tf import Discriminator
  keras.utils.set_random_seed(0)
  d = Discriminator()
  x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32))

  @tf.function
  def gradients(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(d(x, training=True))
    return tape.gradient(loss, d.trainable_variables)

  graph = gradients.get_concrete_function(x).graph
  grads = [op for op in graph.get_operations() if op.type == "LeakyReluGrad"]
  assert len(grads) == 2  # act1, act2
  for op in grads:
    assert op.inputs[1].op.type == "LeakyRelu", op.inputs[1].op.type  # features: the output, not the input
  # (the same numbers as tf.nn.leaky_relu's gradient: tests/test_frozen.py)


@pytest.mark.parametrize("kernel_size, strides, form", [(3, 2, "subpixel"), (3, 1, "flipped"), (5, 1, "flipped")])
def test_a_bfloat16_transposed_convolution_by_forward_convolutions_is_the_float32_layer(kernel_size, strides, form):
  """transposed_convolution, as a bfloat16 generator trains: the float32 layer's output and its
  gradients in x, kernel and bias to bfloat16 rounding. The bias gradient sums the output gradient
  over every pixel of the batch: summed in bfloat16 (TensorFlow's BiasAddGrad) it loses most of
  its value, summed in float32 it keeps it."""
  rng = np.random.default_rng(3)
  x = tf.constant(rng.normal(size=(16, 16, 12, 4)).astype(np.float32))
  float32 = keras.layers.Conv2DTranspose(3, kernel_size, strides=strides, padding="same")
  low = keras.layers.Conv2DTranspose(3, kernel_size, strides=strides, padding="same", dtype="mixed_bfloat16")
  float32.build(x.shape), low.build(x.shape)
  float32.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in float32.get_weights()])
  low.set_weights(float32.get_weights())
  assert transpose_form(float32) == "conv_transpose" and transpose_form(low) == form
  dy = tf.constant(rng.normal(0.5, 1.0, size=float32.compute_output_shape(x.shape)).astype(np.float32))

  def with_gradients(run, layer):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.cast(run(x), tf.float32)
    return [y] + tape.gradient(y, [x, layer.kernel, layer.bias], output_gradients=dy)

  got = with_gradients(lambda x: transposed_convolution(low, x, form), low)
  want = with_gradients(float32, float32)
  keras_low = with_gradients(low, low)  # Keras' own bfloat16 layer: conv2d_transpose and its gradients
  assert got[0].shape == want[0].shape and all(g.dtype == tf.float32 for g in got)
  for name, ours, theirs, keras_ in zip(("y", "dx", "dkernel", "dbias"), got, want, keras_low):
    # 2^-8 per rounding, a few roundings deep; a misplaced tap is off by 100%. How deep a bfloat16
    # reduction rounds is the CPU's: where it has no AVX512-BF16 TensorFlow's backprop-filter kernel
    # (the kernel's gradient, a sum over 3,072 pixels) rounds partial sums, and Keras' own bfloat16
    # layer is as far from float32 there (5-9 x 2^-8 seen on an AMD EPYC without AVX512): so no
    # farther than the larger of the two bounds (not for the bias, which Keras sums in bfloat16).
    error, bound = np.linalg.norm(ours - theirs), 4 * 2.0**-8 * np.linalg.norm(theirs)
    if name == "dkernel":
      bound = max(bound, 1.5 * np.linalg.norm(keras_ - theirs))
    assert error < bound, (name, error / np.linalg.norm(theirs))


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_bilinear_upsampling_is_keras_layer_in_both_precisions(dtype):
  """upsampling (DRAEM's decoders) gives Keras' bilinear UpSampling2D's output and input gradient
  bit for bit: in bfloat16 it skips tf.image.resize's clip, which changes no value."""
  rng = np.random.default_rng(7)
  x = tf.cast(tf.constant(rng.normal(0, 3, (2, 5, 6, 16)).astype(np.float32)), "bfloat16" if "bf" in dtype else "float32")
  dy = tf.cast(tf.constant(rng.normal(0, 1, (2, 10, 12, 16)).astype(np.float32)), x.dtype)
  layer = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype=dtype)

  def with_gradient(run):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = run(x)
    return y, tape.gradient(y, x, output_gradients=dy)

  (y, dx), (want_y, want_dx) = with_gradient(lambda x: upsampling(layer, x)), with_gradient(layer)
  assert y.dtype == want_y.dtype == x.dtype and y.shape == (2, 10, 12, 16)
  np.testing.assert_array_equal(tf.cast(y, tf.float32).numpy(), tf.cast(want_y, tf.float32).numpy())
  np.testing.assert_array_equal(tf.cast(dx, tf.float32).numpy(), tf.cast(want_dx, tf.float32).numpy())
  nearest = np.repeat(np.repeat(tf.cast(x, tf.float32).numpy(), 2, axis=1), 2, axis=2)
  assert np.abs(tf.cast(y, tf.float32).numpy() - nearest).max() > 0.1  # a blend, not a copy


@pytest.mark.parametrize("ema", [False, True])
def test_fused_adam_is_keras_adam(ema):
  """nn.optimizers.FusedAdam (each variable's step one ResourceApplyAdam kernel) against
  keras.optimizers.Adam on the same variables and gradients: the same weights, moments and (with
  use_ema) moving average after steps at two learning rates, in a tf.function as training runs
  it. Tolerance: the kernel (as TF1's Adam) computes 1 - beta in float32, Keras in float64
  (0.00099998713 against 0.001 for beta 0.999: 1.3e-5 relative in the moments), far below what a
  wrong step costs (a weight moves by ~lr a step: 1% of one step is 1e-4 of lr 1e-2)."""
  from anogan_tf.nn.optimizers import FusedAdam

  rng = np.random.default_rng(0)
  init = [rng.standard_normal(shape).astype(np.float32) for shape in [(3, 3, 2, 4), (4,), (7, 5)]]
  grads = [[rng.standard_normal(w.shape).astype(np.float32) * 10.0 ** rng.integers(-3, 2) for w in init]
           for _ in range(6)]
  out = {}
  for kind, cls in (("keras", keras.optimizers.Adam), ("fused", FusedAdam)):
    weights = [keras.Variable(w) for w in init]
    opt = cls(learning_rate=1e-2, beta_1=0.5, beta_2=0.999, epsilon=1e-8, use_ema=ema, ema_momentum=0.9)
    opt.build(weights)
    step = tf.function(lambda g: opt.apply(g, weights))  # noqa: B023 (called in this iteration only)
    for i, g in enumerate(grads):
      opt.learning_rate = 1e-2 if i < 3 else 1e-3
      step([tf.constant(x) for x in g])
    if ema:
      opt.finalize_variable_values(weights)
    out[kind] = [w.numpy() for w in weights] + [v.numpy() for v in opt._momentums + opt._velocities]
  for a, b in zip(out["keras"], out["fused"]):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)
  moved = max(np.abs(a - w0).max() for a, w0 in zip(out["keras"][:3], init))
  assert moved > 1e-3  # the steps changed the weights: equal after a real update
