"""How deep the networks are for an image size, and which discriminator layers f(x) can read: the
arithmetic that both the settings' checks and the networks (anogan_tf.nn.networks) follow."""

from __future__ import annotations

from typing import Sequence, Tuple

# --- depth: the networks grow with the image size

BASE_SIZE = 32  # the configured networks are for images up to this size: seed 000's 28, CIFAR-10's 32
MAX_FILTERS = 512  # added blocks double the filters of their neighbour, up to this (DCGAN's widest layer)


def blocks_for_size(size: int) -> int:
  """Stride-2 blocks added to each configured network for size x size images: none up to
  BASE_SIZE (so MNIST keeps exactly seed 000's networks), then one per doubling (64: 1, 128: 2,
  256: 3), so that every size reaches the same smallest feature map (8x8 with the defaults)."""
  extra = 0
  while size > BASE_SIZE * 2 ** extra:
    extra += 1
  return extra


def _doubling(filters: int, n: int) -> Tuple[int, ...]:
  """n filter counts, each twice the one before, starting at twice `filters`, capped at MAX_FILTERS
  (or at `filters` if that is larger)."""
  return tuple(min(filters * 2 ** (i + 1), max(MAX_FILTERS, filters)) for i in range(n))


def generator_layout(filters: Sequence[int], strides: Sequence[int], dense_channels: int,
                     size: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
  """The generator's (filters, strides) for size x size images: the configured ones (--g_filters,
  --g_strides), preceded by blocks_for_size(size) stride-2 up-convolutions right after the Dense
  layer, the first with the most filters (each twice its successor's). So the Dense layer's
  output has the same size for every image size: 8x8 with seed 000's strides (7x7 for MNIST's 28)."""
  first = filters[0] if len(filters) else dense_channels
  added = _doubling(int(first), blocks_for_size(size))[::-1]
  return added + tuple(filters), (2,) * len(added) + tuple(strides)


def encoder_layout(filters: Sequence[int], strides: Sequence[int],
                   size: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
  """(filters, strides) of a discriminator or encoder for size x size images: the configured
  convolutions (--d_filters or --e_filters, their strides), followed by blocks_for_size(size)
  stride-2 convolutions with twice the filters of the one before. The first convolutions, and
  with them f = act1 of the discrimination loss, stay as configured."""
  last = filters[-1] if len(filters) else 16
  added = _doubling(int(last), blocks_for_size(size))
  return tuple(filters) + added, tuple(strides) + (2,) * len(added)


def discriminator_feature_layers(depth: int, batchnorm: bool, dropout: float, batchnorm_first: bool = True,
                                 zero_pad_after: Tuple[int, ...] = ()) -> Tuple[str, ...]:
  """The names of the discriminator's layers that f(x) can read (all but its output logits), in
  order: conv1, [pad1,] [bn1,] act1, [drop1,] conv2, ..., flatten."""
  names = []
  for i in range(1, depth + 1):
    names += ([f"conv{i}"] + [f"pad{i}"] * (i in zero_pad_after)
              + [f"bn{i}"] * bool(batchnorm and (i > 1 or batchnorm_first)) + [f"act{i}"]
              + [f"drop{i}"] * (dropout > 0))
  return tuple(names) + ("flatten",)
