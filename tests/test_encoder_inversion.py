"""experiments/encoder_inversion.py: its measure on encoders whose answer is known."""

import os
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "experiments"))
import encoder_inversion  # noqa: E402

D = 8


def dense(kernel, bias=None):
  layer = keras.layers.Dense(D, use_bias=bias is not None)
  layer.build((None, D))
  layer.set_weights([kernel] + ([bias] if bias is not None else []))
  return keras.Sequential([keras.Input((D,)), layer])


@pytest.mark.parametrize("prior", ["uniform", "normal"])
def test_an_exact_inverse_and_a_constant_encoder(prior):
  rotation = np.linalg.qr(np.random.default_rng(1).standard_normal((D, D)))[0].astype(np.float32)
  generator = dense(rotation)
  exact = encoder_inversion.inversion(generator, dense(rotation.T), D, prior, samples=4000)
  assert exact["correlation"] == pytest.approx(1.0, abs=1e-4) and exact["error"] < 1e-4
  chance = 2 / 3 if prior == "uniform" else 2 / np.sqrt(np.pi)  # mean |z - z'|, independent draws
  assert exact["chance"] == pytest.approx(chance, rel=0.05)

  constant = encoder_inversion.inversion(generator, dense(np.zeros((D, D), np.float32), np.full(D, 0.3, np.float32)),
                                         D, prior, samples=4000)
  assert constant["correlation"] == 0.0 and constant["error"] > 0.4

  # An encoder that undoes G on half the coordinates and ignores the rest: correlation 1/2.
  half = rotation.T.copy()
  half[:, D // 2:] = 0
  assert encoder_inversion.inversion(generator, dense(half), D, prior, samples=4000)["correlation"] == \
      pytest.approx(0.5, abs=1e-4)
