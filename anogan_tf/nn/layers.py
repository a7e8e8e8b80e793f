"""The layers and ops that exist for speed: the same numbers as Keras' own, computed faster here.

- `FusedBatchNormalization`: `keras.layers.BatchNormalization` run by TensorFlow's fused kernel,
  as TF1 ran seed 000's BatchNorm.
- `SubpixelGradientConv2D`: `keras.layers.Conv2D` whose input gradient (for a 3x3 stride-2 'same'
  convolution) is computed as a sub-pixel convolution.
- `leaky_relu`: tf.nn.leaky_relu with its gradient read from its output.
- The sub-pixel form of a stride-2, 3x3, 'same' transposed convolution (`subpixel_kernel`,
  `conv2d_transpose_subpixel`, `conv2d_stride2_subpixel_gradient`, `subpixel_phases`), which
  `make bench` also times, and `transposed_convolution`: a bfloat16 Conv2DTranspose layer run by
  forward convolutions (`transpose_form`), as the networks train and nn.frozen searches with it.

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


def _subpixel_taps():
  """Per (t, u, phase) of the 2x2 sub-pixel kernel, the index (3 * row + column) of the 3x3 kernel's
  tap it holds, or 9 (a zero): phase 2p + q of tap (t, u) is kernel[_TAP[p][t], _TAP[q][u]]."""
  return [[[9 if _TAP[p][t] is None or _TAP[q][u] is None else 3 * _TAP[p][t] + _TAP[q][u]
            for p in (0, 1) for q in (0, 1)] for u in (0, 1)] for t in (0, 1)]


_SUBPIXEL_TAPS = _subpixel_taps()


def subpixel_kernel(kernel: tf.Tensor) -> tf.Tensor:
  """(3, 3, c_out, c_in) conv2d_transpose kernel -> (2, 2, c_in, 4 * c_out) conv2d kernel: one
  gather of the taps (each tap lands in one place, the rest are zeros), so its gradient is one op too."""
  kernel = tf.convert_to_tensor(kernel)
  c_out, c_in = kernel.shape[2], kernel.shape[3]
  taps = tf.concat([tf.reshape(kernel, (9, c_out, c_in)), tf.zeros((1, c_out, c_in), kernel.dtype)], axis=0)
  phases = tf.gather(taps, _SUBPIXEL_TAPS)  # (2, 2, 4, c_out, c_in)
  # channel (2p + q) * c_out + c, as depth_to_space reads it
  return tf.reshape(tf.transpose(phases, (0, 1, 4, 2, 3)), (2, 2, c_in, 4 * c_out))


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


_PHASE_PADDING = [[0, 0], [1, 0], [1, 0], [0, 0]]  # a row and a column of zeros before: conv2d_transpose_subpixel's pad
_PHASE_GRADIENT_PADDING = [[0, 0], [0, 1], [0, 1], [0, 0]]


def subpixel_phases(x, kernel, gradient_kernel):
  """The four phases of a sub-pixel transposed convolution: conv2d(x, kernel) over x padded as
  conv2d_transpose_subpixel pads it, `kernel` (2, 2, in, 4 * out) from subpixel_kernel. Its input
  gradient is computed as a convolution too, by `gradient_kernel` (`turned(kernel)`), over the
  gradient padded after: TensorFlow's own gradient, a backprop-input kernel, is the slow one, and
  with the padding written into the convolution it leaves oneDNN for a kernel slower still."""

  @tf.custom_gradient
  def phases(x, kernel):
    def grad(dy):
      return _forward_gradients(dy, kernel, gradient_kernel, _PHASE_PADDING, _PHASE_GRADIENT_PADDING,
                                tf.pad(x, _PHASE_PADDING))

    return tf.nn.conv2d(x, kernel, 1, _PHASE_PADDING), grad

  return phases(x, kernel)


def _forward_gradients(dy, kernel, gradient_kernel, padding, gradient_padding, filter_gradient_input):
  """(dx, dkernel) of conv2d(x, kernel, stride 1, `padding`) by forward convolutions: dx the
  convolution of dy by `gradient_kernel` (`turned(kernel)`) padded as `gradient_padding`, dkernel a
  backprop-filter convolution over `filter_gradient_input` (x, or x padded as `padding`)."""
  dx = tf.nn.conv2d(dy, gradient_kernel, 1, gradient_padding)
  dkernel = tf.compat.v1.nn.conv2d_backprop_filter(filter_gradient_input, tf.shape(kernel), dy, [1, 1, 1, 1],
                                                   "SAME" if padding == "SAME" else "VALID")
  return dx, dkernel


def turned(kernel):
  """`kernel` (kh, kw, in, out) turned half a turn, in and out swapped: the forward convolution
  whose output is a stride-1 convolution's input gradient (and, of a transposed convolution's
  kernel, the forward convolution it equals for stride 1, 'same', odd kernel sizes)."""
  return tf.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))


# Activations that act on each number alone: they commute with depth_to_space, so a sub-pixel step
# applies them to its four phases before interleaving them.
ELEMENTWISE = (keras.activations.linear, keras.activations.relu, keras.activations.tanh, keras.activations.sigmoid)


def transpose_form(layer) -> str:
  """How a Conv2DTranspose runs in bfloat16: by TensorFlow's forward-convolution kernels (oneDNN's
  bfloat16 backprop-input kernel, which conv2d_transpose is, is the slow one, and a forward
  convolution takes its bias and activation fused). "subpixel" for 3x3 stride 2 'same' (the four
  phases of the sub-pixel form as one convolution, `subpixel_phases`, interleaved after the
  activation), "flipped" for stride 1 'same' with odd kernel sizes (a convolution with the kernel
  `turned`); "conv_transpose" otherwise, and always in float32 (the layer's own call)."""
  if (layer.compute_dtype != "bfloat16" or layer.padding != "same" or layer.data_format != "channels_last"
      or tuple(layer.dilation_rate) != (1, 1) or layer.output_padding is not None
      or getattr(layer, "activation", None) not in ELEMENTWISE):
    return "conv_transpose"
  if tuple(layer.kernel_size) == (3, 3) and tuple(layer.strides) == (2, 2):
    return "subpixel"
  if tuple(layer.strides) == (1, 1) and all(k % 2 for k in layer.kernel_size):
    return "flipped"
  return "conv_transpose"


def _convolution_and_bias(x, kernel, bias, padding, gradient_padding, filter_gradient_input):
  """conv2d(x, kernel, stride 1, `padding`) + bias, `bias` float32 (added in x's dtype), with a
  gradient by forward convolutions: the input gradient is the convolution of the output gradient
  by `turned(kernel)` (padded as `gradient_padding`), the kernel's a backprop-filter one over
  `filter_gradient_input(x)`, and the bias gradient a sum accumulated in float32 (TensorFlow's
  Sum does so on bfloat16; its BiasAddGrad sums in bfloat16, which loses the sum over a batch of
  pixels altogether)."""

  @tf.custom_gradient
  def convolution(x, kernel, bias):
    def grad(dy):
      dx, dkernel = _forward_gradients(dy, kernel, turned(kernel), padding, gradient_padding, filter_gradient_input(x))
      return dx, dkernel, tf.cast(tf.reduce_sum(dy, [0, 1, 2]), tf.float32)  # TensorFlow's Sum adds bfloat16 in float32

    return tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, padding), tf.cast(bias, x.dtype)), grad

  return convolution(x, kernel, bias)


def transposed_convolution(layer, x, form: str):
  """A Conv2DTranspose `layer` on x (its bias and activation included) in the forward-convolution
  `form` of `transpose_form` ("subpixel" or "flipped"), differentiable in x and in the layer's
  kernel and bias, whose gradients are forward and backprop-filter convolutions and a float32 sum
  (`_convolution_and_bias`): what networks.run_chain trains a bfloat16 generator with. The kernel
  is cast to the compute dtype and rearranged at every call (the rearrangement's gradient is the
  kernel's)."""
  dtype = layer.compute_dtype
  kernel = tf.cast(layer.kernel, dtype)
  out_channels = kernel.shape[2]
  bias = tf.cast(layer.bias, tf.float32) if layer.use_bias else tf.zeros((out_channels,), tf.float32)
  x = tf.cast(x, dtype)
  if form == "subpixel":
    y = _convolution_and_bias(x, subpixel_kernel(kernel), tf.tile(bias, [4]), _PHASE_PADDING, _PHASE_GRADIENT_PADDING,
                              lambda x: tf.pad(x, _PHASE_PADDING))
    return tf.nn.depth_to_space(layer.activation(y), 2)
  y = _convolution_and_bias(x, turned(kernel), bias, "SAME", "SAME", lambda x: x)
  return layer.activation(y)


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


def fusable(layer, inputs, mask=None) -> bool:
  """Whether TensorFlow's fused kernel can run the keras.layers.BatchNormalization `layer` on
  `inputs`: 4-D channels-last float32 or bfloat16, no mask, no renorm, scale and centre, an epsilon
  the kernel accepts."""
  rank = len(inputs.shape)
  return (mask is None and rank == 4 and layer.axis in (-1, rank - 1) and inputs.dtype in (tf.float32, tf.bfloat16)
          and layer.scale and layer.center and not layer.renorm and layer.epsilon >= _FUSED_MIN_EPSILON)


def fused_batch_norm(layer, inputs, training=None):
  """The keras.layers.BatchNormalization `layer` run on `inputs` (`fusable`) by the fused kernel,
  its output in the dtype that kernel computes in: bfloat16 for a bfloat16 input of a multiple of
  16 channels, otherwise float32. A training pass normalises by the batch's biased variance and
  updates the moving statistics, the variance with Bessel's correction (TF1's fused layer, and
  PyTorch's BatchNorm2d)."""
  channels = inputs.shape[-1]
  dtype = tf.bfloat16 if inputs.dtype == tf.bfloat16 and channels is not None and channels % 16 == 0 else tf.float32
  # float32 whatever the layer's policy: Keras may hand its variables cast to the compute dtype
  gamma, beta = tf.cast(layer.gamma.value, tf.float32), tf.cast(layer.beta.value, tf.float32)
  inputs = tf.cast(inputs, dtype)  # oneDNN's bfloat16 kernel (and its gradient) is the slow one on narrow layers
  if training and layer.trainable:
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, epsilon=layer.epsilon, is_training=True)
    decay = 1.0 - layer.momentum  # TF1's assign_moving_average: v -= (v - batch value) * decay
    layer.moving_mean.assign_sub((tf.cast(layer.moving_mean.value, tf.float32) - mean) * decay)
    layer.moving_variance.assign_sub((tf.cast(layer.moving_variance.value, tf.float32) - variance) * decay)
    return outputs
  outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
      inputs, gamma, beta, mean=tf.cast(layer.moving_mean.value, tf.float32),
      variance=tf.cast(layer.moving_variance.value, tf.float32), epsilon=layer.epsilon, is_training=False)
  return outputs


@keras.saving.register_keras_serializable(package="anogan_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` run by TensorFlow's fused kernel (`fused_batch_norm`), as TF1
  ran seed 000's BN.

  TF1's `tf.layers.batch_normalization(fused=None)` picked the fused kernel for 4-D inputs, so seed
  000's three BN layers ran as one FusedBatchNormV3 op each (one gradient op backwards), where
  Keras 3 runs about ten element-wise ops. The weights, their names and the hyperparameters are
  Keras', so either class loads the other's checkpoints. Outputs and gradients agree with Keras'
  to float32 rounding; one difference is TF1's: while training, the moving variance averages
  the batch variance with Bessel's correction, n / (n - 1) over the n = batch * height * width
  values per channel (the fused kernel returns it and TF1's layer kept it), where Keras averages
  the biased variance. Both normalise the batch by the biased variance. Inputs the fused kernel
  does not take (`fusable`) run Keras' implementation unchanged.

  With bfloat16 inputs (--precision=bfloat16) and a multiple of 16 channels, oneDNN's bfloat16
  kernel normalises them (its statistics are float32); with other channel counts the input is cast
  to float32, normalised by the float32 kernel and cast back to bfloat16 (as Keras' layer computes
  in float32): oneDNN's bfloat16 kernel, and above all its gradient, run many times slower than the
  float32 ones there (8 channels: over ten times), and about as fast on 16 or 32. The batch
  statistics are float32, and the moving statistics stay float32 variables.
  """

  def call(self, inputs, training=None, mask=None):
    if not fusable(self, inputs, mask):
      return super().call(inputs, training=training, mask=mask)
    return tf.cast(self.normalize(inputs, training), inputs.dtype)

  def normalize(self, inputs, training=None):
    """`fused_batch_norm`: the output in the dtype the kernel computes in. networks.run_chain hands
    a float32 output on in float32, so the element-wise steps after it (the LeakyReLU and its
    gradient) run in float32, which TensorFlow computes faster here than bfloat16, with no cast to
    bfloat16 and back."""
    return fused_batch_norm(self, inputs, training)


def upsampling(layer, inputs):
  """The keras.layers.UpSampling2D `layer` on `inputs`; a bilinear one on bfloat16 inputs as the
  float32 resize cast to bfloat16. tf.image.resize hands a bfloat16 input's result back through
  `saturate_cast`, a clip to bfloat16's range whose gradient (a select per bound) cost more than
  the resize's own in DRAEM's decoders; a bilinear blend of bfloat16 values cannot leave that range,
  so the clip changes no number. Anything else runs the layer."""
  if not (inputs.dtype == tf.bfloat16 and layer.interpolation == "bilinear" and layer.data_format == "channels_last"
          and inputs.shape[1] is not None and inputs.shape[2] is not None):
    return layer(inputs)
  size = [inputs.shape[1] * layer.size[0], inputs.shape[2] * layer.size[1]]
  return tf.cast(tf.raw_ops.ResizeBilinear(images=inputs, size=size, half_pixel_centers=True), tf.bfloat16)


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
