"""Adam with each variable's update one fused kernel."""

from __future__ import annotations

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
  """Keras 3's Adam whose per-variable step is TensorFlow's fused `ResourceApplyAdam` kernel (what
  TF1's tf.train.AdamOptimizer, seed 000's optimizer, ran) instead of Keras' ~20 element-wise ops:
  Keras' formula (m += (g - m)(1 - beta_1), v += (g^2 - v)(1 - beta_2),
  var -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + epsilon), t = iterations + 1) with
  TF1's rounding (1 - beta in float32, where Keras takes it in float64: 1.3e-5 relative for 0.999),
  the same variables and checkpoints, and a training step that traces in less time (a second or
  two per run of the small networks). tests/test_layers.py compares it with keras.optimizers.Adam.
  Everything else (the moving average of use_ema, tf.distribute, the learning rate) is Keras';
  amsgrad and sparse gradients take Keras' own step."""

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
    index = self._get_variable_index(variable)
    m, v = self._momentums[index], self._velocities[index]
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.value.handle, v=v.value.handle, beta1_power=tf.pow(beta_1, step),
        beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))
