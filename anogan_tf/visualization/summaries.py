"""TensorBoard events: training's per-epoch losses and sample grid, evaluate's score histograms
and mapping-loss curve.

Training appends to <workdir>/tensorboard (resumed runs add events files there). Each epoch
writes its losses as scalars and, when the family can sample, one image: the tiled grid of
samples/epoch_NNNN.png (64 samples of the fixed noise), so the cost per epoch is one small PNG
encode. The warm-start encoder writes the same with the prefix `encoder_` to
<workdir>/tensorboard/encoder.

Evaluate replaces <eval folder>/tensorboard with the events of its own run: histograms
`scores/normal` and `scores/anomalous` (step 0), and `mapping_loss`, the mean search loss over
the evaluated images at each mapping iteration (step = iteration, 1-based) for a scorer that
searches (AnoGAN). `tensorboard --logdir=DIR` shows training and every evaluation together.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

import numpy as np

from anogan_tf.visualization import plots

TENSORBOARD = "tensorboard"  # the folder, in the workdir and in each evaluation folder


def training_epoch(writer, step: int, metrics: dict, samples: Optional[np.ndarray] = None, prefix: str = "") -> None:
  """Epoch `step` (1-based): {loss name: value} as scalars `<prefix><name>`, and `samples`
  (n, h, w, c) in [-1, 1], if any, as one image `<prefix>samples` (8 per row)."""
  import tensorflow as tf
  with writer.as_default(step=step):
    for key, value in metrics.items():
      tf.summary.scalar(f"{prefix}{key}", value)
    if samples is not None:
      grid = plots.tile(plots.to_display(samples))  # (rows*h, 8*w[, 3]) in [0, 1]
      grid = grid[..., None] if grid.ndim == 2 else grid
      tf.summary.image(f"{prefix}samples", grid[None].astype(np.float32), max_outputs=1)
  writer.flush()


def evaluation(folder: str, labels, scores, mean_trajectory: Optional[np.ndarray] = None) -> None:
  """Replaces `folder` with the events of one evaluation: the score histograms of the normal
  (label 0) and anomalous (label 1) images, and the mean mapping loss per iteration. Written to
  a temporary folder beside it first, so `folder` holds one whole evaluation or the previous one."""
  import tensorflow as tf
  parent, name = os.path.split(os.path.abspath(folder))
  tmp = os.path.join(parent, f".{name}.tmp{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  labels, scores = np.asarray(labels), np.asarray(scores, np.float32)
  try:
    writer = tf.summary.create_file_writer(tmp)
    with writer.as_default(step=0):
      for label, tag in ((0, "scores/normal"), (1, "scores/anomalous")):
        if np.any(labels == label):
          tf.summary.histogram(tag, scores[labels == label], buckets=60)
      if mean_trajectory is not None:
        for iteration, value in enumerate(np.asarray(mean_trajectory, np.float64), start=1):
          tf.summary.scalar("mapping_loss", value, step=iteration)
    writer.close()
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
