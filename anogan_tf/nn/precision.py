"""--precision: the numbers the networks compute with, float32 or bfloat16.

bfloat16 is Keras' `mixed_bfloat16` dtype policy on every layer of the networks: convolutions,
transposed convolutions and matmuls run in bfloat16, while every variable (weights, BatchNorm's
moving statistics, the optimizers' state, the LatentMapper's z) stays float32. A network's output
(and any intermediate f(x) read from it) is cast to float32 (`to_float32`, in the chain runner),
so the losses, the scores and every reduction over them are float32 sums, and BatchNorm computes
its batch statistics in float32 (the fused kernel takes bfloat16 inputs with float32 statistics).

The policy is given to the layers when they are built (`built`, `policy`): Keras' dtype policy is
set for the build and restored in `finally`, so importing the package or running a command leaves
`keras.config.dtype_policy()` as it was. The networks themselves (the outer keras.Model) keep the
float32 policy: a .keras file saved by a bfloat16 training is a float32 model, and loading it in
either precision (`policy` around the load) rebuilds its layers in that precision, as evaluate,
score and export do.
"""

from __future__ import annotations

import contextlib
import sys

import keras
import tensorflow as tf

from anogan_tf.config import PRECISIONS, one_of
from anogan_tf.utils import cpu

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}  # --precision -> Keras' dtype policy
_LOW = (tf.bfloat16, tf.float16)
_noticed = []  # the notice is printed once per process


def to_float32(x):
  """x as float32 when it is a bfloat16 (or float16) tensor; otherwise x unchanged."""
  return tf.cast(x, tf.float32) if getattr(x, "dtype", None) in _LOW else x


def notice(precision: str, stream=None) -> bool:
  """One line on stderr, once per process, when bfloat16 runs on a CPU without bf16 instructions
  (slower there than float32); True when it printed."""
  if precision != "bfloat16" or cpu.bf16_support() in cpu.FAST or _noticed:
    return False
  _noticed.append(True)
  print(f"note: --precision=bfloat16 on a CPU without bf16 instructions ({cpu.cpu_model()}: bf16 support "
        f"{cpu.bf16_support()}) runs slower than float32; use --precision=float32 here",
        file=stream or sys.stderr)
  return True


@contextlib.contextmanager
def policy(precision: str):
  """Layers created inside take the dtype policy of `precision`; Keras' policy is restored on exit."""
  one_of(precision, PRECISIONS, "--precision")
  notice(precision)
  before = keras.config.dtype_policy()
  keras.config.set_dtype_policy(POLICIES[precision])
  try:
    yield
  finally:
    keras.config.set_dtype_policy(before)


def _models(made):
  if isinstance(made, keras.Model):
    yield made
  elif isinstance(made, dict):
    for value in made.values():
      yield from _models(value)
  elif isinstance(made, (tuple, list)):
    for value in made:
      yield from _models(value)


def built(precision: str, build):
  """`build()` (networks: a keras.Model, or a dict, tuple or list holding them, with anything
  else) with its layers in `precision`; each network itself keeps the float32 policy, so it saves
  as a float32 model."""
  with policy(precision):
    made = build()
  for model in _models(made):
    model.dtype_policy = "float32"
  return made


def network_precision(model) -> str:
  """The precision a network's layers compute in: bfloat16 when any of them does."""
  for layer in model._flatten_layers(include_self=False):
    if layer.dtype_policy.compute_dtype == "bfloat16":
      return "bfloat16"
  return "float32"


def record(precision: str) -> dict:
  """What metrics.json records of the numbers: `compute_precision` (--precision; `precision` there
  is the decision's, beside recall), the CPU and its bf16 support (`cpu`, `cpu_bf16`)."""
  return {"compute_precision": precision, **cpu.report()}
