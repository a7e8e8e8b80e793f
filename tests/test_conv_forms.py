import numpy as np
import pytest
import tensorflow as tf

from anogan_tf.conv_forms import conv2d_transpose_subpixel, subpixel_kernel


@pytest.mark.parametrize("hw, c_in, c_out", [(7, 32, 16), (14, 16, 8), (14, 16, 1), (5, 3, 2)])
def test_subpixel_form_equals_conv2d_transpose(hw, c_in, c_out):
  rng = np.random.default_rng(hw + c_in + c_out)
  x = tf.constant(rng.standard_normal((3, hw, hw, c_in)).astype(np.float32))
  kernel = tf.constant(rng.standard_normal((3, 3, c_out, c_in)).astype(np.float32))
  expected = tf.nn.conv2d_transpose(x, kernel, (3, 2 * hw, 2 * hw, c_out), 2, "SAME")
  got = conv2d_transpose_subpixel(x, subpixel_kernel(kernel))
  np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)
  assert np.abs(expected.numpy()).max() > 1  # not a trivially zero comparison
