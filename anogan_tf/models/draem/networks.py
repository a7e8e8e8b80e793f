"""DRAEM's two networks (Zavrtanik et al., ICCV 2021; the authors' model_unet.py), narrow enough for
a CPU: the reconstructive network, an encoder-decoder WITHOUT skip connections that repaints a
picture with simulated anomalies as the anomaly-free one, and the discriminative network, a U-Net
WITH skip connections that takes the picture beside its repainting (6 channels for colour) and
outputs 2-class logits per pixel (normal, anomalous).

Both are built of the authors' blocks: two 3x3 convolutions with BatchNorm and ReLU per level,
max pooling down, bilinear upsampling followed by a 3x3 convolution up. Level i has
`width * min(2**i, 8)` channels (the authors: base 128 and 64 with the same doubling, capped at
8x). The number of poolings follows the image size as the authors' networks do at 256 pixels (4
for the reconstructive network, to 16x16; 5 for the discriminative one, to 8x8), one fewer per
halving (`pools_for`), at least one.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import tensorflow as tf

from anogan_tf.errors import AnoganError
from anogan_tf.nn.layers import fusable, fused_batch_norm, upsampling
from anogan_tf.nn.precision import to_float32

WIDTH_CAP = 8  # the widest level has width * 8 channels, as the authors' networks


def pools_for(side: int, bottom: int) -> int:
  """Poolings from `side` pixels down to about `bottom` (16: the reconstructive network's bottleneck at
  256 pixels; 8: the discriminative one's), at least 1, each on an even size."""
  pools = max(1, int(math.floor(math.log2(side / bottom) + 1e-9)))
  while pools > 1 and side % (2 ** pools):
    pools -= 1
  if side % 2:
    raise AnoganError(f"DRAEM's networks need an even image size, not {side}; use --image_size=64 (or 32, 128, 256)")
  return pools


def level_widths(width: int, pools: int) -> list:
  return [width * min(2 ** i, WIDTH_CAP) for i in range(pools + 1)]


def _conv(filters: int, name: str) -> keras.layers.Layer:
  return keras.layers.Conv2D(filters, 3, padding="same", name=name)


def _block(filters: int, momentum: float, name: str, convs: int = 2) -> keras.Sequential:
  """`convs` x (3x3 convolution, BatchNorm, ReLU), the authors' block (run by `run_block`)."""
  layers = []
  for j in range(convs):
    layers += [_conv(filters, f"{name}_conv{j}"),
               keras.layers.BatchNormalization(momentum=momentum, name=f"{name}_bn{j}"),
               keras.layers.ReLU(name=f"{name}_relu{j}")]
  return keras.Sequential(layers, name=name)


def _up(filters: int, momentum: float, name: str) -> keras.Sequential:
  """Bilinear upsampling by 2, then one 3x3 convolution, BatchNorm, ReLU (the authors' `up` blocks)."""
  return keras.Sequential([keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize"),
                           *_block(filters, momentum, name, convs=1).layers], name=name)


def run_block(block: keras.Sequential, x, training):
  """The block's layers in order, each BatchNorm by TensorFlow's fused kernel (nn.layers.fused_batch_norm):
  one op (and one gradient op) per layer instead of Keras' ten or so, oneDNN's bfloat16 kernel under
  --precision=bfloat16, and a running variance that averages the unbiased batch variance as PyTorch's
  BatchNorm2d (the authors') does; the bilinear upsampling without a needless clip in bfloat16
  (nn.layers.upsampling). The layers stay Keras' own, so .keras files of earlier versions load."""
  for layer in block.layers:
    if isinstance(layer, keras.layers.BatchNormalization) and fusable(layer, x):
      if not layer.built:
        layer.build(x.shape)
      x = tf.cast(fused_batch_norm(layer, x, training), x.dtype)
    elif isinstance(layer, keras.layers.UpSampling2D):
      x = upsampling(layer, x)
    else:
      x = layer(x, training=training)
  return x


class _UNet(keras.Model):
  """Shared by both networks: the encoder levels, the decoder levels, the output convolution."""

  skips: bool = False

  def __init__(self, image_shape: Sequence[int], width: int = 16, pools: int = 2, out_channels: int = 3,
               bn_momentum: float = 0.9, **kwargs):
    super().__init__(**kwargs)
    if int(width) < 1 or int(pools) < 1:
      raise AnoganError(f"DRAEM network width {width} and poolings {pools} must be 1 or more; fix --draem_width")
    self.image_shape = tuple(int(v) for v in image_shape)
    self.width, self.pools, self.out_channels = int(width), int(pools), int(out_channels)
    self.bn_momentum = float(bn_momentum)
    widths = level_widths(self.width, self.pools)
    self.down = [_block(w, self.bn_momentum, f"down{i}") for i, w in enumerate(widths)]
    self.up = [_up(widths[i], self.bn_momentum, f"up{i}") for i in range(self.pools)]
    self.merge = [_block(widths[i], self.bn_momentum, f"merge{i}") for i in range(self.pools)]
    self.pool = keras.layers.MaxPooling2D(2, name="pool")
    self.out = keras.layers.Conv2D(self.out_channels, 3, padding="same", name="out")
    self.call(tf.zeros((1,) + self.input_shape_of_network()), training=False)  # creates every weight now
    self.built = True

  def input_shape_of_network(self) -> tuple:
    return self.image_shape

  def build(self, input_shape=None):
    pass  # built in __init__

  def call(self, inputs, training=False):
    features, x = [], inputs
    for i, block in enumerate(self.down):
      x = run_block(block, x if i == 0 else self.pool(x), training)
      features.append(x)
    for i in reversed(range(self.pools)):
      x = run_block(self.up[i], x, training)
      if self.skips:
        x = tf.concat([x, features[i]], axis=-1)
      x = run_block(self.merge[i], x, training)
    return to_float32(self.out(x))  # float32 for the losses and scores under --precision=bfloat16

  def activation_floats(self) -> int:
    """Floats one example keeps through the network (every layer output, about): what the
    automatic chunk size budgets for."""
    h, w = self.image_shape[:2]
    total = 0
    for i, width in enumerate(level_widths(self.width, self.pools)):
      pixels = (h // 2 ** i) * (w // 2 ** i)
      decoder = (10 if self.skips else 9) if i < self.pools else 0  # upsampling, its block, the merge block
      total += pixels * width * (6 + decoder)
    return total + h * w * self.out_channels

  def get_config(self):
    return {"name": self.name, "image_shape": list(self.image_shape), "width": self.width, "pools": self.pools,
            "out_channels": self.out_channels, "bn_momentum": self.bn_momentum}

  @classmethod
  def from_config(cls, config):
    return cls(**config)


@keras.saving.register_keras_serializable(package="anogan_tf")
class ReconstructiveNetwork(_UNet):
  """Picture (batch, h, w, c) -> its repainting (batch, h, w, c), linear output on the pictures'
  [-1, 1] scale (the authors' network has no output activation either). No skip connections: what
  it paints passes through the bottleneck."""

  skips = False

  def __init__(self, image_shape, width: int = 16, pools: int = 2, out_channels: int = 0, bn_momentum: float = 0.9,
               **kwargs):
    super().__init__(image_shape, width, pools, out_channels or image_shape[-1], bn_momentum, **kwargs)


@keras.saving.register_keras_serializable(package="anogan_tf")
class DiscriminativeNetwork(_UNet):
  """(picture, repainting) concatenated on the channels (batch, h, w, 2c) -> 2-class logits (batch,
  h, w, 2): class 1 = anomalous. Skip connections from each encoder level to the decoder's."""

  skips = True

  def __init__(self, image_shape, width: int = 16, pools: int = 3, out_channels: int = 2, bn_momentum: float = 0.9,
               **kwargs):
    super().__init__(image_shape, width, pools, out_channels, bn_momentum, **kwargs)

  def input_shape_of_network(self) -> tuple:
    h, w, c = self.image_shape
    return (h, w, 2 * c)
