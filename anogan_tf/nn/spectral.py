"""Spectral normalisation (Miyato et al. 2018): a Conv2D's or Dense layer's kernel divided by an
estimate of its largest singular value, so the layer is about 1-Lipschitz and a discriminator
built of them cannot sharpen without bound on a few hundred training pictures.

The estimate is the power iteration's: a vector u (one per layer, a non-trainable weight saved
with the network) is refined once per training-mode pass (v = W u / |W u|, u = W^T v / |W^T v|,
with W the kernel reshaped to (inputs, outputs)) and sigma = v^T W u. Gradients flow through W
in W / sigma with u and v held constant, as in the authors' code. Inference uses the stored u
(the same iteration, not saved), so scoring changes no weight.
"""

from __future__ import annotations

import keras
import tensorflow as tf

EPSILON = 1e-12


def _unit(x):
  return x / (tf.norm(x) + EPSILON)


@keras.saving.register_keras_serializable(package="anogan_tf")
class SpectralNormalization(keras.layers.Wrapper):
  """Wraps a Conv2D (or subclass) or Dense layer: the same layer with its kernel divided by its
  largest singular value (the power iteration's estimate; `power_iterations` per training pass).
  The wrapper takes the wrapped layer's place and name in a chain."""

  def __init__(self, layer, power_iterations: int = 1, **kwargs):
    super().__init__(layer, **kwargs)
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      raise ValueError(f"SpectralNormalization wraps Conv2D or Dense layers, not {type(layer).__name__}")
    self.power_iterations = int(power_iterations)

  def build(self, input_shape):
    if not self.layer.built:
      self.layer.build(input_shape)
    outputs = int(self.layer.kernel.shape[-1])
    self.u = self.add_weight(name="u", shape=(outputs, 1), initializer=keras.initializers.RandomNormal(stddev=1.0),
                             trainable=False)
    self.built = True

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  def sigma(self, update: bool = False):
    """The estimate of the kernel's largest singular value after the power iterations from the
    stored u (stored back when `update`), differentiable in the kernel."""
    kernel = tf.convert_to_tensor(self.layer.kernel)
    w = tf.reshape(kernel, (-1, kernel.shape[-1]))  # (inputs, outputs)
    u = tf.convert_to_tensor(self.u)
    for _ in range(max(1, self.power_iterations)):
      v = _unit(tf.matmul(w, u))  # (inputs, 1)
      u = _unit(tf.matmul(w, v, transpose_a=True))  # (outputs, 1)
    u, v = tf.stop_gradient(u), tf.stop_gradient(v)
    if update:
      self.u.assign(u)
    return tf.squeeze(tf.matmul(tf.matmul(v, w, transpose_a=True), u))

  def normalized_kernel(self, update: bool = False):
    return tf.convert_to_tensor(self.layer.kernel) / self.sigma(update)

  def call(self, inputs, training=False):
    layer = self.layer
    kernel = self.normalized_kernel(update=bool(training))
    if isinstance(layer, keras.layers.Conv2D):
      outputs = layer.convolution_op(inputs, kernel)
    else:
      outputs = tf.matmul(inputs, kernel)
    if layer.use_bias:
      outputs = tf.nn.bias_add(outputs, layer.bias)
    return layer.activation(outputs) if layer.activation is not None else outputs

  def get_config(self):
    return {**super().get_config(), "power_iterations": self.power_iterations}
