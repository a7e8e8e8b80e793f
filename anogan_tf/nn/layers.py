"""The layers and ops that exist for speed: the same numbers as Keras' own, computed faster here.

- `FusedBatchNormalization`: `keras.layers.BatchNormalization` run by TensorFlow's fused kernel,
  as TF1 ran seed 000's BatchNorm.
- `SubpixelGradientConv2D`: `keras.layers.Conv2D` whose input gradient (for a 3x3 stride-2 'same'
  convolution) is computed as a sub-pixel convolution.
- `leaky_relu`: tf.nn.leaky_relu with its gradient read from its output.
- The sub-pixel form of a stride-2, 3x3, 'same' transposed convolution (`subpixel_kernel`,
  `conv2d_transpose_subpixel`, `conv2d_stride2_subpixel_gradient`), which `make bench` also times.

A transposed convolution with stride 2 writes each output pixel from one of four "phases"
(even/odd row x even/odd column), and each phase is an ordinary convolution of the input with a
subset of the 3x3 taps. Stacking the four phases as 4*c_out channels of one 2x2 convolution and
interleaving them with depth_to_space gives the same result as `tf.nn.conv2d_transpose`,
computed by TensorFlow's forward-convolution kernels instead of its backprop-input ones. The
input gradient of D's stride-2 convolution is such a transposed convolution too.

The layers keep their registered names (`anogan_tf>FusedBatchNormalization`,
`anogan_tf>SubpixelGradientConv2D`), so .keras files saved when they lived in networks.py load.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# --- the sub-pixel form of a stride-2 transposed convolution

# TF's 'same' transposed conv, stride 2, kernel 3: output 2m + p takes input m - 1 + t through
# kernel row _TAP[p][t] (None: no tap). Derived from out[o] = sum x[i] w[k] over o = 2i + k.
_TAP = ((2, 0), (None, 1))


def subpixel_kernel(kernel: tf.Tensor) -> tf.Tensor:
  """(3, 3, c_out, c_in) conv2d_transpose kernel -> (2, 2, c_in, 4 * c_out) conv2d kernel."""
  kernel = tf.convert_to_tensor(kernel)
  c_out, c_in = kernel.shape[2], kernel.shape[3]
  zero = tf.zeros((c_in, c_out), kernel.dtype)
  rows = []
  for t in (0, 1):
    columns = []
    for u in (0, 1):
      phases = [zero if _TAP[p][t] is None or _TAP[q][u] is None
                else tf.transpose(kernel[_TAP[p][t], _TAP[q][u]]) for p in (0, 1) for q in (0, 1)]
      columns.append(tf.concat(phases, axis=1))  # channel (2p + q) * c_out + c, as depth_to_space reads it
    rows.append(tf.stack(columns))
  return tf.stack(rows)


def conv2d_transpose_subpixel(x: tf.Tensor, kernel_2x2: tf.Tensor) -> tf.Tensor:
  """Equals tf.nn.conv2d_transpose(x, kernel, (n, 2h, 2w, c_out), 2, 'SAME') up to rounding,
  given kernel_2x2 = subpixel_kernel(kernel)."""
  padded = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
  return tf.nn.depth_to_space(tf.nn.conv2d(padded, kernel_2x2, 1, "VALID"), 2)


@tf.custom_gradient
def conv2d_stride2_subpixel_gradient(x: tf.Tensor, kernel: tf.Tensor):
  """tf.nn.conv2d(x, kernel, 2, 'SAME') for even heights and widths, with its input gradient (a
  stride-2 transposed convolution) computed in the sub-pixel form. oneDNN's backprop-input kernel
  is slow when it writes few channels: for D's first convolution (one input channel) `make bench`
  measures it several times slower than the sub-pixel form."""
  y = tf.nn.conv2d(x, kernel, 2, "SAME")

  def grad(dy):
    dx = conv2d_transpose_subpixel(dy, subpixel_kernel(kernel))
    dkernel = tf.compat.v1.nn.conv2d_backprop_filter(x, tf.shape(kernel), dy, [1, 2, 2, 1], "SAME")
    return dx, dkernel

  return y, grad


# --- LeakyReLU


def leaky_relu(x, alpha: float):
  """tf.nn.leaky_relu(x, alpha) for 0 < alpha < 1, whose gradient reads y (same sign as x) instead of x.

  The same numbers forwards and backwards (for a positive slope y and x have the same sign), and
  it leaves a convolution's biased output with one reader, which Grappler's remapper can fuse into
  the convolution (with the input read a second time by the gradient, its remapper fails on a loop
  body and leaves it unfused); the networks (networks.run_chain) and nn.frozen run every
  keras.layers.LeakyReLU as this."""
  alpha = float(alpha)
  if not 0.0 < alpha < 1.0:
    return tf.nn.leaky_relu(x, alpha)

  @tf.custom_gradient
  def from_output(x):
    y = tf.nn.leaky_relu(x, alpha)
    return y, lambda dy: tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=alpha)

  return from_output(x)


# --- layers

# FusedBatchNormV3 refuses a smaller epsilon (cuDNN's limit; tf.compat.v1.nn.fused_batch_norm raises it).
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="anogan_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` run by TensorFlow's fused kernel, as TF1 ran seed 000's BN.

  TF1's `tf.layers.batch_normalization(fused=None)` picked the fused kernel for 4-D inputs, so seed
  000's three BN layers ran as one FusedBatchNormV3 op each (one gradient op backwards), where
  Keras 3 runs about ten element-wise ops. The weights, their names and the hyperparameters are
  Keras', so either class loads the other's checkpoints. Outputs and gradients agree with Keras'
  to float32 rounding; one difference is TF1's: while training, the moving variance averages
  the batch variance with Bessel's correction, n / (n - 1) over the n = batch * height * width
  values per channel (the fused kernel returns it and TF1's layer kept it), where Keras averages
  the biased variance. Both normalise the batch by the biased variance. Inputs the fused kernel
  does not take (not 4-D channels-last float32 or bfloat16, a mask, renorm, no scale or centre, a
  tiny epsilon) run Keras' implementation unchanged.

  With bfloat16 inputs (--precision=bfloat16) the input is cast to float32, normalised by the
  float32 kernel and cast back to bfloat16 (as Keras' layer computes in float32): oneDNN's
  bfloat16 kernel, and above all its gradient, run several times slower than the float32 ones on
  the narrow layers here. The batch statistics are float32, and the moving statistics stay
  float32 variables.
  """

  def _fusable(self, inputs, mask) -> bool:
    rank = len(inputs.shape)
    return (mask is None and rank == 4 and self.axis in (-1, rank - 1) and inputs.dtype in (tf.float32, tf.bfloat16)
            and self.scale and self.center and not self.renorm and self.epsilon >= _FUSED_MIN_EPSILON)

  def call(self, inputs, training=None, mask=None):
    if not self._fusable(inputs, mask):
      return super().call(inputs, training=training, mask=mask)
    # float32 whatever the layer's policy: Keras may hand its variables cast to the compute dtype
    gamma, beta = tf.cast(self.gamma.value, tf.float32), tf.cast(self.beta.value, tf.float32)
    dtype = inputs.dtype
    inputs = tf.cast(inputs, tf.float32)  # oneDNN's bfloat16 kernel (and its gradient) is the slow one
    if training and self.trainable:
      outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
          inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
      decay = 1.0 - self.momentum  # TF1's assign_moving_average: v -= (v - batch value) * decay
      self.moving_mean.assign_sub((tf.cast(self.moving_mean.value, tf.float32) - mean) * decay)
      self.moving_variance.assign_sub((tf.cast(self.moving_variance.value, tf.float32) - variance) * decay)
      return tf.cast(outputs, dtype)
    outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, mean=tf.cast(self.moving_mean.value, tf.float32),
        variance=tf.cast(self.moving_variance.value, tf.float32), epsilon=self.epsilon, is_training=False)
    return tf.cast(outputs, dtype)


@keras.saving.register_keras_serializable(package="anogan_tf")
class SubpixelGradientConv2D(keras.layers.Conv2D):
  """`keras.layers.Conv2D` whose input gradient, for a 3x3 stride-2 'same' convolution of an
  even-sized image, is computed as a sub-pixel convolution (see `conv2d_stride2_subpixel_gradient`): the same
  numbers to float32 rounding, and faster here for the image-facing convolution of D, whose
  input gradient every mapping iteration and every G step needs; in float32 and in bfloat16
  (--precision). Otherwise plain Conv2D."""

  def convolution_op(self, inputs, kernel):
    h, w = inputs.shape[1], inputs.shape[2]
    if (self.kernel_size == (3, 3) and self.strides == (2, 2) and self.padding == "same"
        and self.dilation_rate == (1, 1) and self.data_format == "channels_last"
        and inputs.dtype in (tf.float32, tf.bfloat16)
        and h is not None and w is not None and h % 2 == 0 and w % 2 == 0):
      return conv2d_stride2_subpixel_gradient(inputs, tf.convert_to_tensor(kernel))
    return super().convolution_op(inputs, kernel)
