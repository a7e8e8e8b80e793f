"""A chain of layers run frozen: in inference mode, on weights prepared once rather than at every call.

A search that runs the same frozen networks many times (the LatentMapper's iterations) pays, at
every iteration, for what does not change between them: reading each variable, casting it to the
compute dtype (--precision=bfloat16), and a BatchNormalization in inference mode, which is an
affine map per channel (y * s + t, with s = gamma / sqrt(variance + epsilon) and t = beta - mean * s)
run forwards and backwards as two more passes over the activations. `FrozenChain` prepares the
weights once (`weights()`, called once per search, outside its loop): each inference BatchNorm that
directly follows a Dense, Conv2D or Conv2DTranspose without an activation (with at most a
channels-last Reshape after a Dense) is folded into that layer's kernel and bias
(W * s, b * s + t), and every kernel is cast to its layer's compute dtype. `__call__(x, weights)`
then runs the chain on them: the same function as the layers in inference mode, rounded differently
(float32: a few ulps; bfloat16: the folded kernel is rounded to bfloat16 once, where the layers
round W and then normalise).

In bfloat16 a Conv2DTranspose runs as a forward convolution (nn.layers' `transpose_form`: the sub-pixel
form for 3x3 stride 2, a flipped kernel for stride 1), whose bias and activation oneDNN
fuses into it; the element-wise steps after a sub-pixel step (its activation, a LeakyReLU) act on
its four phases before they are interleaved, as a Reshape after a Dense waits for the activation
after it (`run`: an element-wise op commutes with a rearrangement, and next to the convolution or
matmul it is fused). The chain's output stays in its compute dtype when `run` hands it to another
chain (G's output to D's features in the search).

LeakyReLU runs as nn.layers' `leaky_relu` (its gradient reads the output: see there), as the
networks run it.

Layers it does not know (Dropout, spectral normalisation, padding, ...) are called as they are,
in inference mode, so any chain runs; only the known ones gain.
"""

from __future__ import annotations

from typing import List, Optional

import keras
import tensorflow as tf

from anogan_tf.nn.layers import ELEMENTWISE, leaky_relu, subpixel_kernel, subpixel_phases, transpose_form, turned
from anogan_tf.nn.precision import to_float32
from anogan_tf.nn.spectral import SpectralNormalization

_LINEAR = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)
_LINEAR_CALLS = tuple(cls.call for cls in _LINEAR)


def _is_batchnorm(layer) -> bool:
  spec = getattr(layer, "input_spec", None)
  last = getattr(spec, "ndim", None)
  return (isinstance(layer, keras.layers.BatchNormalization) and last is not None and layer.axis in (-1, last - 1)
          and layer.center
          and layer.scale and not getattr(layer, "renorm", False))


def _plain_linear(layer) -> bool:
  """A Dense, Conv2D or Conv2DTranspose run by its class's own call (no LoRA, no quantisation)."""
  return (isinstance(layer, _LINEAR) and type(layer).call in _LINEAR_CALLS and not getattr(layer, "lora_enabled", False)
          and getattr(layer, "quantization_mode", None) is None)


def _linear_activation(layer) -> bool:
  return getattr(layer, "activation", None) in (None, keras.activations.linear)


def _elementwise(kind, layer) -> bool:
  """Whether a step acts on each number alone (the same in any layout of the channels)."""
  if kind != "layer":
    return False
  if isinstance(layer, (keras.layers.LeakyReLU, keras.layers.ReLU)):
    return True
  return isinstance(layer, keras.layers.Activation) and layer.activation in ELEMENTWISE


def _interleave(x):
  """A sub-pixel step's four phases (channel (2p + q) * c + k) as the pixels they are."""
  return tf.nn.depth_to_space(x, 2)


def _affine(bn):
  """(s, t), float32: BatchNorm `bn` in inference mode is y * s + t per channel."""
  scale = tf.cast(bn.gamma, tf.float32) * tf.math.rsqrt(tf.cast(bn.moving_variance, tf.float32) + bn.epsilon)
  return scale, tf.cast(bn.beta, tf.float32) - tf.cast(bn.moving_mean, tf.float32) * scale


class FrozenChain:
  """`chain` (built layers, as networks.run_chain runs them) up to the layer named `stop_at`,
  run frozen. `weights()` reads and prepares the weights (a list of tensors); `__call__(x, weights)`
  returns the chain's output as float32 (as run_chain does)."""

  def __init__(self, chain, stop_at: Optional[str] = None):
    self.steps = []  # (kind, layer, folded BatchNorm layer or None, reshape channels or None)
    layers = list(chain)
    i = 0
    while i < len(layers):
      layer = layers[i]
      if _plain_linear(layer):
        kind = "dense" if isinstance(layer, keras.layers.Dense) else (
            transpose_form(layer) if isinstance(layer, keras.layers.Conv2DTranspose) else "conv")
        bn, reshape, used = self._folded(layers, i, kind, stop_at)
        self.steps.append((kind, layer, bn, reshape))
        i += used
        if layers[i - 1].name == stop_at:
          break
        continue
      self.steps.append(("batchnorm" if _is_batchnorm(layer) else "layer", layer, None, None))
      i += 1
      if layer.name == stop_at:
        break

  @staticmethod
  def _folded(layers, i, kind, stop_at):
    """(the BatchNorm folded into the linear layer at i or None, the Reshape between them or None,
    how many layers the step covers)."""
    layer = layers[i]
    if not _linear_activation(layer) or layer.name == stop_at or getattr(layer, "data_format", "channels_last") != (
        "channels_last"):
      return None, None, 1
    nxt = layers[i + 1] if i + 1 < len(layers) else None
    if nxt is not None and _is_batchnorm(nxt):
      return nxt, None, 2
    if (kind == "dense" and isinstance(nxt, keras.layers.Reshape) and nxt.name != stop_at and i + 2 < len(layers)
        and _is_batchnorm(layers[i + 2]) and layer.units % int(nxt.target_shape[-1]) == 0):
      return layers[i + 2], nxt, 3
    return None, None, 1

  @tf.autograph.experimental.do_not_convert  # Python control flow over the layers: unrolled at trace time
  def weights(self) -> List[tf.Tensor]:
    """The prepared weights: per linear step its kernel and bias (BatchNorm folded in) in the
    layer's compute dtype, in the form the step runs (a sub-pixel step adds its gradient's kernel).
    Read from the variables now: call it once per search."""
    out = []
    for kind, layer, bn, reshape in self.steps:
      if kind == "layer":
        continue
      if kind == "batchnorm":  # alone: y * s + t
        out += [tf.cast(w, layer.compute_dtype) for w in _affine(layer)]
        continue
      kernel = tf.cast(layer.kernel, tf.float32)
      transposed = isinstance(layer, keras.layers.Conv2DTranspose)
      out_channels = kernel.shape[2] if transposed else kernel.shape[-1]
      bias = tf.cast(layer.bias, tf.float32) if layer.use_bias else tf.zeros((out_channels,), tf.float32)
      if bn is not None:
        scale, shift = _affine(bn)
        if reshape is not None:  # Dense units laid out as (..., channels): unit j is channel j % channels
          repeats = out_channels // int(scale.shape[0])
          scale, shift = tf.tile(scale, [repeats]), tf.tile(shift, [repeats])
        kernel = kernel * (scale[:, None] if transposed else scale)
        bias = bias * scale + shift
      if kind == "subpixel":  # (2, 2, in, 4 * out): phase (2p + q) of output channel c is channel (2p + q) * out + c
        kernel, bias = subpixel_kernel(kernel), tf.tile(bias, [4])
      elif kind == "flipped":  # (kh, kw, in, out)
        kernel = turned(kernel)
      dtype = layer.compute_dtype
      out += [tf.cast(kernel, dtype), tf.cast(bias, dtype)]
      if kind == "subpixel":  # its input gradient's kernel
        out.append(tf.cast(turned(kernel), dtype))
    return out

  @tf.autograph.experimental.do_not_convert
  def __call__(self, x, weights: List[tf.Tensor]):
    """The chain's output on `weights`, float32."""
    return to_float32(self.run(x, weights))

  @tf.autograph.experimental.do_not_convert
  def run(self, x, weights: List[tf.Tensor]):
    """The chain's output on `weights` in the last layer's compute dtype (bfloat16 stays bfloat16:
    a chain that reads it next takes it without a cast there and back)."""
    it = iter(weights)
    layout = None  # a rearrangement owed to x (a Reshape, a sub-pixel interleave), put off past element-wise steps
    for kind, layer, _, reshape in self.steps:
      if layout is not None and not _elementwise(kind, layer):
        x, layout = layout(x), None
      if kind == "layer":
        x = self._other(layer, x)
        continue
      kernel, bias = next(it), next(it)
      x = tf.cast(x, kernel.dtype)
      if kind == "batchnorm":
        x = x * kernel + bias  # scale and shift
        continue
      if kind == "dense":
        x = keras.ops.matmul(x, kernel)
      elif kind == "conv":
        x = layer.convolution_op(x, kernel)
      elif kind == "subpixel":
        x, layout = subpixel_phases(x, kernel, next(it)), _interleave
      elif kind == "flipped":
        x = tf.nn.conv2d(x, kernel, 1, "SAME")
      else:
        x = keras.ops.conv_transpose(x, kernel, strides=layer.strides, padding=layer.padding,
                                     output_padding=layer.output_padding, data_format=layer.data_format,
                                     dilation_rate=layer.dilation_rate)
      x = tf.nn.bias_add(x, bias)
      if not _linear_activation(layer):
        x = layer.activation(x)
      if reshape is not None:
        layout = reshape
    return x if layout is None else layout(x)

  @staticmethod
  def _other(layer, x):
    if isinstance(layer, keras.layers.LeakyReLU):
      return leaky_relu(tf.cast(x, layer.compute_dtype), layer.negative_slope)
    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout, SpectralNormalization)):
      return layer(x, training=False)
    return layer(x)
