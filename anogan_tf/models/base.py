"""What a model family provides. The training driver (train_lib), evaluate, score and export use
only this interface, so a family is one module under anogan_tf/models/ and a registry line.

A family module defines:

  NAME: str                                   # the --model value
  NETWORKS: tuple of str                      # saved as <workdir>/<name>.keras, in this order
  def build_networks(config) -> dict          # name -> registered, serialisable keras.Model
  def make_trainer(config, networks) -> Trainer
  def make_scorer(config, networks, **overrides) -> Scorer
  def sample(networks, noise) -> images       # (n, h, w, c) in [-1, 1] for the sample grids; or None
  def noise(rng, n, config) -> np.ndarray     # the per-example noise the driver hands train_step

The driver owns epochs, shuffling, tf.data, checkpoints and resume, history.csv, TensorBoard,
sample grids, NaN and collapse checks and locks; a family supplies only its step(s), its
optimizers and what else to checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class ScoreResult:
  """Per-image results of a scorer; every array has N rows, one per image."""

  score: np.ndarray  # (N,) anomaly score: higher = more anomalous
  reconstruction: np.ndarray  # (N, h, w, c) in [-1, 1]: G(z*), G(E(x)) or the decoder's output
  residual_map: np.ndarray  # (N, h, w, c) |x - reconstruction|: where the anomaly is
  parts: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> (N,) parts of the score
  extras: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> (N, ...) e.g. z, trajectory

  def __len__(self):
    return len(self.score)

  @staticmethod
  def concatenate(results: Sequence["ScoreResult"]) -> "ScoreResult":
    first = results[0]
    cat = lambda key, attr: np.concatenate([getattr(r, attr)[key] for r in results])  # noqa: E731
    return ScoreResult(score=np.concatenate([r.score for r in results]),
                       reconstruction=np.concatenate([r.reconstruction for r in results]),
                       residual_map=np.concatenate([r.residual_map for r in results]),
                       parts={k: cat(k, "parts") for k in first.parts},
                       extras={k: cat(k, "extras") for k in first.extras})


class Scorer:
  """Scores images (N, h, w, c) floats in [-1, 1]. `score_chunks` yields one ScoreResult per
  fixed-size chunk (`batch_size` images, the last one padded) so memory stays flat; `score`
  concatenates them."""

  batch_size: int

  def score_chunks(self, images) -> Iterator[ScoreResult]:
    raise NotImplementedError

  def score(self, images) -> ScoreResult:
    return ScoreResult.concatenate(list(self.score_chunks(images)))


class Trainer(tf.Module):
  """A family's optimisation: `train_step(x, noise, phase)` updates the networks on one batch
  and returns {loss name: scalar tensor} with keys `loss_names`; the driver compiles it inside
  its epoch function (so it must be traceable: no Python side effects per call, variables built
  in __init__). `phase(epoch)` selects a learning-rate phase (`n_phases` traces)."""

  loss_names: Tuple[str, ...] = ()
  n_phases: int = 1

  def phase(self, epoch: int) -> int:
    return 0

  def train_step(self, x, noise, phase: int) -> Dict[str, tf.Tensor]:
    raise NotImplementedError

  def checkpoint_items(self) -> dict:
    """{name: trackable} beyond the networks' weights: optimizers, counters."""
    return {}
