"""Other ways to compute the seed's stride-2, 3x3, 'same' transposed convolution: `make bench`
times them all, and D's first convolution computes its input gradient this way.

A transposed convolution with stride 2 writes each output pixel from one of four "phases"
(even/odd row x even/odd column), and each phase is an ordinary convolution of the input with a
subset of the 3x3 taps. Stacking the four phases as 4*c_out channels of one 2x2 convolution and
interleaving them with depth_to_space gives the same result as `tf.nn.conv2d_transpose`,
computed by TensorFlow's forward-convolution kernels instead of its backprop-input ones. The
input gradient of D's stride-2 convolution is such a transposed convolution too.
"""

from __future__ import annotations

import tensorflow as tf

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
