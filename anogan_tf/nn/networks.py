"""The networks the families share: seed 000's DCGAN blocks as Keras 3 subclassed models,
configurable for the other presets. `Generator` (AnoGAN's and Efficient GAN's G, the autoencoders'
decoder), `Discriminator` (AnoGAN's D) and `Encoder` (shaped like D: the encoders of Efficient GAN,
the autoencoder and the VAE). The layers that exist for speed are in layers.py.

Seed 000 (TF1): generator Dense(7*7*32) -> BN -> LeakyReLU(0.2) -> ConvT(16, 3, s2) -> BN -> LReLU
-> ConvT(8, 3, s2) -> BN -> LReLU -> ConvT(1, 3, s1) -> tanh; discriminator Conv(16, 3, s2) -> LReLU
-> Conv(32, 3, s2) -> LReLU -> Flatten -> Dense(1) logits. Glorot-uniform kernels (TF1's
xavier_initializer) and zero biases are the Keras defaults, so they need no argument.

Depth: for images larger than 32 pixels (--image_size), `generator_layout` and `encoder_layout`
add one stride-2 block per doubling to the configured filters and strides (Config's
generator_kwargs, discriminator_kwargs and encoder_kwargs apply them); up to 32 pixels the
networks are exactly the configured ones.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import keras
import tensorflow as tf

from anogan_tf.config import ACTIVATIONS, DENSE_NORMS, UPSAMPLINGS, discriminator_feature_layers, one_of
from anogan_tf.config.layouts import blocks_for_size, encoder_layout, generator_layout  # noqa: F401 (re-exported)
from anogan_tf.errors import AnoganError
from anogan_tf.nn.layers import (
  FusedBatchNormalization,
  SubpixelGradientConv2D,
  fusable,
  leaky_relu,
  transpose_form,
  transposed_convolution,
)
from anogan_tf.nn.precision import to_float32
from anogan_tf.nn.spectral import SpectralNormalization

ENCODER_OUTPUTS = ("linear", "tanh")  # Encoder(output_activation=...)


def _activation(kind: str, slope: float, name: str) -> keras.layers.Layer:
  one_of(kind, ACTIVATIONS, "activation")
  if kind == "relu":
    return keras.layers.ReLU(name=name)
  return keras.layers.LeakyReLU(negative_slope=slope, name=name)


def _check_sizes(network: str, flag: str, filters: Tuple[int, ...], strides: Tuple[int, ...]) -> None:
  """Filter counts and strides of 1 or more (a zero stride would divide by zero or reach Keras)."""
  for what, values in (("filters", filters), ("strides", strides)):
    if any(v < 1 for v in values):
      raise AnoganError(f"{network} {what} {list(values)} must all be 1 or more; fix --{flag}_{what}")


class _Stack(keras.Model):
  """A plain chain of layers, built by shape so a fresh instance has its weights at once."""

  def _build_chain(self, input_shape):
    build_chain(self.chain, input_shape)
    self.built = True

  def _run(self, x, training, stop_at=None):
    return run_chain(self.chain, x, training, stop_at)

  def _chain_input_shape(self):
    """The input shape the chain is built for: images by default; the generator takes z."""
    return (None,) + self.image_shape

  def build(self, input_shape=None):
    if not self.built:
      self._build_chain(self._chain_input_shape())

  def call(self, inputs, training=False):
    return self._run(inputs, training)


def _takes_training(layer) -> bool:
  return isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout, SpectralNormalization))


def _forward_form(layer) -> str:
  """layers.transpose_form of a plain Conv2DTranspose (its class's own call: no LoRA, no
  quantisation); "conv_transpose" (the layer's call) for any other layer and in float32."""
  if (type(layer) is not keras.layers.Conv2DTranspose or getattr(layer, "lora_enabled", False)
      or getattr(layer, "quantization_mode", None) is not None):
    return "conv_transpose"
  return transpose_form(layer)


def _fused_batchnorm(layer, x) -> bool:
  """Whether a bfloat16 FusedBatchNormalization runs by its fused kernel and hands its output on
  in the dtype the kernel computes in (FusedBatchNormalization.normalize): with a float32 kernel
  the element-wise steps up to the next convolution then run in float32 (no cast to bfloat16 and
  back around them)."""
  return (type(layer) is FusedBatchNormalization and layer.compute_dtype == "bfloat16"
          and fusable(layer, x))


def build_chain(chain, input_shape) -> tuple:
  """Builds each layer of `chain` on the previous one's output shape; returns the last shape."""
  shape = tuple(input_shape)
  for layer in chain:
    layer.build(shape)
    shape = layer.compute_output_shape(shape)
  return shape


def run_chain(chain, x, training, stop_at=None):
  """Runs `x` through `chain` (training mode for BatchNorm and Dropout only), stopping after the
  layer named `stop_at` when given; a LeakyReLU runs as nn.layers.leaky_relu. In bfloat16 a
  Conv2DTranspose runs as forward convolutions (nn.layers.transposed_convolution), and a fused
  BatchNorm hands its output on in the dtype it computes in: float32 on narrow layers, so the
  element-wise steps after it run in float32 (the next convolution, or the layer called after it,
  casts it to bfloat16). The result is float32 whatever the layers compute in, so what is reduced
  over it is summed in float32."""
  for layer in chain:
    form = _forward_form(layer)
    if type(layer) is keras.layers.LeakyReLU:  # the same numbers, with a gradient oneDNN's fusions survive
      x = leaky_relu(x if x.dtype == tf.float32 else tf.cast(x, layer.compute_dtype), layer.negative_slope)
    elif form != "conv_transpose":  # bfloat16: by forward convolutions
      x = transposed_convolution(layer, x, form)
    elif _fused_batchnorm(layer, x):  # bfloat16: in the dtype it computes in, float32 on to the next convolution
      x = layer.normalize(x, training=training)
    else:
      x = layer(x, training=training) if _takes_training(layer) else layer(x)
    if layer.name == stop_at:
      return to_float32(x)
  return to_float32(x)


def batchnorm_statistics(model) -> list:
  """The moving mean and variance of every BatchNormalization layer in `model`: the state a
  training-mode forward pass updates. (Not `non_trainable_variables`: in Keras 3 those also hold
  Dropout's random-generator state, which must move on at every pass.)"""
  return [v for layer in model._flatten_layers(include_self=False)
          if isinstance(layer, keras.layers.BatchNormalization) for v in (layer.moving_mean, layer.moving_variance)]


def random_states(model) -> list:
  """The state of every random-number generator in `model` (Dropout's SeedGenerator): the
  variables Keras lists in `variables` but not in `weights`."""
  weights = {id(v) for v in model.weights}
  return [v for v in model.variables if id(v) not in weights]


@keras.saving.register_keras_serializable(package="anogan_tf")
class Generator(_Stack):
  """Maps z (batch, latent_dim) to images (batch, h, w, c) in [-1, 1] (tanh output).

  Defaults are seed 000's generator for 28x28x1 (86,049 weights including BN statistics).
  The strides multiply to the upsampling factor: the Dense layer's output is reshaped to
  (h / prod(strides), w / prod(strides), dense_channels).
  """

  def __init__(self, latent_dim: int = 50, image_shape: Sequence[int] = (28, 28, 1),
               dense_channels: int = 32, filters: Sequence[int] = (16, 8),
               strides: Sequence[int] = (2, 2, 1), upsampling: str = "transpose",
               batchnorm: bool = True, dense_batchnorm: bool = True,
               activation: str = "leaky_relu", leaky_slope: float = 0.2,
               bn_momentum: float = 0.99, dense_norm: str = "channel", dense_activation: str = "",
               **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = int(latent_dim)
    self.image_shape = tuple(int(s) for s in image_shape)
    self.dense_channels = int(dense_channels)
    self.filters = tuple(int(f) for f in filters)
    self.strides = tuple(int(s) for s in strides)
    self.upsampling = upsampling
    self.batchnorm = bool(batchnorm)
    self.dense_batchnorm = bool(dense_batchnorm)
    self.activation = activation
    self.leaky_slope = float(leaky_slope)
    self.bn_momentum = float(bn_momentum)
    self.dense_norm = dense_norm
    self.dense_activation = dense_activation

    one_of(self.upsampling, UPSAMPLINGS, "upsampling")
    one_of(self.dense_norm, DENSE_NORMS, "dense_norm")
    if self.dense_activation:
      one_of(self.dense_activation, ACTIVATIONS, "dense_activation")
    _check_sizes("generator", "g", self.filters, self.strides)
    if self.dense_channels < 1:
      raise AnoganError(f"generator dense_channels {self.dense_channels} must be 1 or more; fix --g_dense_channels")
    h, w, c = self.image_shape
    if len(self.strides) != len(self.filters) + 1:
      raise AnoganError("generator strides need one entry per filter plus one for the output layer")
    factor = math.prod(self.strides)
    if h % factor or w % factor:
      raise AnoganError(f"image size {h}x{w} is not divisible by the generator's upsampling factor {factor}; "
                        "choose --g_strides whose product divides the image size")
    self.start_shape = (h // factor, w // factor, self.dense_channels)

    # The Dense block: seed 000 reshapes, then normalises per channel (BN axis 3); seed 001
    # normalises each Dense output (BatchNorm1d) and applies ReLU before reshaping.
    dense_block = []
    if self.dense_batchnorm:
      dense_block.append(FusedBatchNormalization(momentum=self.bn_momentum, name="bn0"))
    dense_block.append(_activation(self.dense_activation or activation, self.leaky_slope, "act0"))
    reshape = keras.layers.Reshape(self.start_shape, name="reshape")
    chain = [keras.layers.Dense(math.prod(self.start_shape), name="dense")]
    chain += dense_block + [reshape] if self.dense_norm == "feature" else [reshape] + dense_block
    for i, (units, stride) in enumerate(zip(self.filters + (c,), self.strides), start=1):
      last = i == len(self.strides)
      name = "output" if last else f"up{i}"
      if upsampling == "transpose":
        chain.append(keras.layers.Conv2DTranspose(units, 3, strides=stride, padding="same", name=name))
      else:
        if stride > 1:
          chain.append(keras.layers.UpSampling2D(stride, name=f"upsample{i}"))
        chain.append(keras.layers.Conv2D(units, 3, padding="same", name=name))
      if not last:
        if self.batchnorm:
          chain.append(FusedBatchNormalization(momentum=self.bn_momentum, name=f"bn{i}"))
        chain.append(_activation(activation, self.leaky_slope, f"act{i}"))
    chain.append(keras.layers.Activation("tanh", name="tanh"))
    self.chain = chain
    self._build_chain((None, self.latent_dim))

  def _chain_input_shape(self):
    return (None, self.latent_dim)

  def compute_output_shape(self, input_shape):
    return (input_shape[0],) + self.image_shape

  def get_config(self):
    return {**super().get_config(), "latent_dim": self.latent_dim, "image_shape": list(self.image_shape),
            "dense_channels": self.dense_channels, "filters": list(self.filters),
            "strides": list(self.strides), "upsampling": self.upsampling,
            "batchnorm": self.batchnorm, "dense_batchnorm": self.dense_batchnorm,
            "activation": self.activation, "leaky_slope": self.leaky_slope,
            "bn_momentum": self.bn_momentum, "dense_norm": self.dense_norm,
            "dense_activation": self.dense_activation}


def dense(units: int, name: str, spectral_norm: bool = False):
  """Dense(units) named `name`; with `spectral_norm` a SpectralNormalization under that name wrapping
  the Dense (named `name`_kernel), as conv_blocks wraps its convolutions."""
  if spectral_norm:
    return SpectralNormalization(keras.layers.Dense(units, name=f"{name}_kernel"), name=name)
  return keras.layers.Dense(units, name=name)


def conv_blocks(filters, strides, batchnorm: bool, leaky_slope: float, bn_momentum: float,
                dropout: float = 0.0, batchnorm_first: bool = True, zero_pad_after=(),
                first_conv=keras.layers.Conv2D, spectral_norm: bool = False) -> list:
  """Seed 000's discriminator body, shared by D and the encoders: per convolution i (3x3, 'same'),
  conv{i} -> [pad{i}] -> [bn{i}] -> act{i} (LeakyReLU) -> [drop{i}]; with `spectral_norm` each
  conv{i} is a SpectralNormalization wrapping the convolution (named conv{i}_kernel)."""
  chain = []
  for i, (units, stride) in enumerate(zip(filters, strides), start=1):
    conv = first_conv if i == 1 else keras.layers.Conv2D
    if spectral_norm:
      chain.append(SpectralNormalization(conv(units, 3, strides=stride, padding="same", name=f"conv{i}_kernel"),
                                         name=f"conv{i}"))
    else:
      chain.append(conv(units, 3, strides=stride, padding="same", name=f"conv{i}"))
    if i in zero_pad_after:  # seed 002's ZeroPadding2D(((0, 1), (0, 1)))
      chain.append(keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"pad{i}"))
    if batchnorm and (i > 1 or batchnorm_first):
      chain.append(FusedBatchNormalization(momentum=bn_momentum, name=f"bn{i}"))
    chain.append(keras.layers.LeakyReLU(negative_slope=leaky_slope, name=f"act{i}"))
    if dropout > 0:
      chain.append(keras.layers.Dropout(dropout, name=f"drop{i}"))
  return chain


@keras.saving.register_keras_serializable(package="anogan_tf")
class Discriminator(_Stack):
  """Maps images (batch, h, w, c) in [-1, 1] to one real/fake logit per image, (batch, 1).

  Defaults are seed 000's discriminator for 28x28x1 (6,369 weights). `spectral_norm` wraps every
  convolution and the logits in spectral.SpectralNormalization (same names). Layers are named
  conv1, [pad1,] bn1, act1, drop1, conv2, ..., flatten, logits (seed 002: no bn1, a pad2
  zero-padding the bottom and right after conv2). `features(x, layer)` reads any of them but the
  logits: f(x) of AnoGAN's discrimination loss (seed 000: act1, the first conv after its
  LeakyReLU; the other presets: flatten). Which layer is a setting of the mapping
  (`LatentMapper(feature_layer=...)`), not of the network, so it is not saved with it;
  `feature_layer`, which .keras files saved before that hold, is accepted and ignored.
  """

  def __init__(self, image_shape: Sequence[int] = (28, 28, 1), filters: Sequence[int] = (16, 32),
               strides: Sequence[int] = (2, 2), batchnorm: bool = False, dropout: float = 0.0,
               leaky_slope: float = 0.2, bn_momentum: float = 0.99, batchnorm_first: bool = True,
               zero_pad_after: Sequence[int] = (), spectral_norm: bool = False, **kwargs):
    kwargs.pop("feature_layer", None)  # saved by earlier versions; now the mapper's setting
    super().__init__(**kwargs)
    self.image_shape = tuple(int(s) for s in image_shape)
    self.filters = tuple(int(f) for f in filters)
    self.strides = tuple(int(s) for s in strides)
    self.batchnorm = bool(batchnorm)
    self.batchnorm_first = bool(batchnorm_first)
    self.zero_pad_after = tuple(int(i) for i in zero_pad_after)
    self.dropout = float(dropout)
    self.leaky_slope = float(leaky_slope)
    self.bn_momentum = float(bn_momentum)
    self.spectral_norm = bool(spectral_norm)
    _check_sizes("discriminator", "d", self.filters, self.strides)
    if not 0.0 <= self.dropout < 1.0:
      raise AnoganError(f"discriminator dropout {self.dropout} is outside [0, 1); fix --d_dropout")
    if any(not 1 <= i <= len(self.filters) for i in self.zero_pad_after):
      raise AnoganError(f"discriminator zero_pad_after {list(self.zero_pad_after)} names no convolution "
                        f"(1..{len(self.filters)}); fix --d_zero_pad_after")

    chain = conv_blocks(self.filters, self.strides, self.batchnorm, self.leaky_slope, self.bn_momentum,
                        dropout=self.dropout, batchnorm_first=self.batchnorm_first,
                        zero_pad_after=self.zero_pad_after, first_conv=SubpixelGradientConv2D,
                        spectral_norm=self.spectral_norm)
    chain += [keras.layers.Flatten(name="flatten"), dense(1, "logits", self.spectral_norm)]
    self.chain = chain
    self._build_chain((None,) + self.image_shape)

  @property
  def feature_layers(self) -> Tuple[str, ...]:
    """The layers f(x) can be read from: every layer but the output logits."""
    return discriminator_feature_layers(len(self.filters), self.batchnorm, self.dropout,
                                        self.batchnorm_first, self.zero_pad_after)

  def check_feature_layer(self, name: str) -> None:
    if name not in self.feature_layers:
      raise AnoganError(f"unknown --feature_layer '{name}'; use one of {', '.join(self.feature_layers)}")

  def features(self, x, training=False, layer: str = "act1"):
    """f(x): the output of `layer` (default: seed 000's act1), flattened to (batch, features)."""
    self.check_feature_layer(layer)
    f = self._run(x, training, stop_at=layer)
    return tf.reshape(f, (tf.shape(f)[0], -1))  # (batch, h*w*c) for feature matching

  def compute_output_shape(self, input_shape):
    return (input_shape[0], 1)

  def get_config(self):
    return {**super().get_config(), "image_shape": list(self.image_shape), "filters": list(self.filters),
            "strides": list(self.strides), "batchnorm": self.batchnorm, "dropout": self.dropout,
            "leaky_slope": self.leaky_slope, "bn_momentum": self.bn_momentum,
            "batchnorm_first": self.batchnorm_first, "zero_pad_after": list(self.zero_pad_after),
            **({"spectral_norm": True} if self.spectral_norm else {})}


@keras.saving.register_keras_serializable(package="anogan_tf")
class Encoder(_Stack):
  """Maps images (batch, h, w, c) in [-1, 1] to latent codes (batch, heads * latent_dim):
  unbounded, or in (-1, 1) with `output_activation="tanh"`.

  Shaped like seed 000's discriminator (strided 3x3 convolutions, LeakyReLU, optional BN), with a
  Dense(heads * latent_dim) output in place of the logit: the encoder of Efficient GAN, of the
  autoencoder (heads=1) and of the VAE (heads=2: mean and log-variance, split by the caller),
  and AnoGAN's warm-start encoder (tanh for a U(-1, 1) prior, as f-AnoGAN bounds its encoder).
  Layers are named conv1, bn1, act1, ..., flatten, code[, bound].
  """

  def __init__(self, image_shape: Sequence[int] = (28, 28, 1), latent_dim: int = 50,
               filters: Sequence[int] = (16, 32), strides: Sequence[int] = (2, 2),
               batchnorm: bool = False, leaky_slope: float = 0.2, bn_momentum: float = 0.99,
               heads: int = 1, output_activation: str = "linear", **kwargs):
    super().__init__(**kwargs)
    self.image_shape = tuple(int(s) for s in image_shape)
    self.latent_dim = int(latent_dim)
    self.output_activation = output_activation
    one_of(self.output_activation, ENCODER_OUTPUTS, "encoder output_activation")
    self.filters = tuple(int(f) for f in filters)
    self.strides = tuple(int(s) for s in strides)
    self.batchnorm = bool(batchnorm)
    self.leaky_slope = float(leaky_slope)
    self.bn_momentum = float(bn_momentum)
    self.heads = int(heads)
    if len(self.strides) != len(self.filters) or self.heads < 1 or self.latent_dim < 1:
      raise AnoganError("encoder: one stride per filter, heads >= 1 and latent_dim >= 1 are needed")
    chain = conv_blocks(self.filters, self.strides, self.batchnorm, self.leaky_slope, self.bn_momentum)
    chain += [keras.layers.Flatten(name="flatten"), keras.layers.Dense(self.heads * self.latent_dim, name="code")]
    if self.output_activation == "tanh":
      chain.append(keras.layers.Activation("tanh", name="bound"))
    self.chain = chain
    self._build_chain((None,) + self.image_shape)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.heads * self.latent_dim)

  def get_config(self):
    return {**super().get_config(), "image_shape": list(self.image_shape), "latent_dim": self.latent_dim,
            "filters": list(self.filters), "strides": list(self.strides), "batchnorm": self.batchnorm,
            "leaky_slope": self.leaky_slope, "bn_momentum": self.bn_momentum, "heads": self.heads,
            "output_activation": self.output_activation}
