"""Figures: sample grids, loss curves, ROC / PR / histogram, the query / reconstruction / residual gallery."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from anogan_tf.io_utils import atomic_path, save_figure  # noqa: E402


def to_display(images: np.ndarray) -> np.ndarray:
  """[-1, 1] (n, h, w, c) -> [0, 1], with single channels squeezed for imshow."""
  images = np.clip((np.asarray(images) + 1.0) / 2.0, 0.0, 1.0)
  return images[..., 0] if images.shape[-1] == 1 else images


def tile(images: np.ndarray, columns: int = 8) -> np.ndarray:
  """(n, h, w[, c]) -> one (rows*h, columns*w[, c]) mosaic."""
  n, h, w = images.shape[:3]
  rows = -(-n // columns)
  canvas = np.ones((rows * h, columns * w) + images.shape[3:], images.dtype)
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
  return canvas


def save_grid(images: np.ndarray, path: str, columns: int = 8) -> None:
  with atomic_path(path) as tmp:
    plt.imsave(tmp, tile(to_display(images), columns), cmap="gray", vmin=0.0, vmax=1.0)


def loss_plot(history: list, path: str, keys=("g_loss", "d_loss")) -> None:
  """The losses `keys` of history.csv's rows against the epoch."""
  fig, ax = plt.subplots(figsize=(7, 4))
  epochs = [row["epoch"] for row in history]
  for key in keys:
    ax.plot(epochs, [row[key] for row in history], label=key)
  ax.set_xlabel("epoch")
  ax.set_ylabel("loss")
  ax.legend()
  save_figure(fig, path)


def roc_pr_plots(labels, scores, auroc, auprc, out_dir: str) -> None:
  """roc.png, and pr.png with both precision-recall curves: anomalies as positives (high score =
  anomalous; metrics.json's auprc) and normals as positives (low score = normal; auprc_normal).
  With few normals in the test split, the first starts near 1 by chance and the second near 0."""
  from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve
  labels, scores = np.asarray(labels), np.asarray(scores)
  fpr, tpr, _ = roc_curve(labels, scores)
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.plot(fpr, tpr, label=f"AUROC {auroc:.4f}")
  ax.plot([0, 1], [0, 1], "k:", lw=1)
  ax.set_xlabel("false positive rate (normals flagged)")
  ax.set_ylabel("true positive rate (anomalies flagged)")
  ax.legend(loc="lower right")
  save_figure(fig, f"{out_dir}/roc.png")
  auprc_normal = average_precision_score(1 - labels, -scores)
  fig, ax = plt.subplots(figsize=(5, 5))
  for positive, truth, ranking, value, colour in (("anomalies", labels, scores, auprc, "C0"),
                                                  ("normals", 1 - labels, -scores, auprc_normal, "C1")):
    precision, recall, _ = precision_recall_curve(truth, ranking)
    ax.plot(recall, precision, color=colour, label=f"{positive} positive: AUPRC {value:.4f}")
    ax.axhline(np.mean(truth), color=colour, ls=":", lw=1, label=f"chance ({positive}): {np.mean(truth):.3f}")
  ax.set_xlabel("recall (share of the positive class found)")
  ax.set_ylabel("precision")
  ax.set_ylim(0, 1.02)
  ax.legend(loc="best", fontsize=8)
  save_figure(fig, f"{out_dir}/pr.png")


def score_histogram(labels, scores, path: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 4))
  bins = np.linspace(np.min(scores), np.max(scores), 60)
  for value, name in ((0, "normal"), (1, "anomalous")):
    ax.hist(scores[labels == value], bins=bins, alpha=0.6, label=name, density=True)
  ax.set_xlabel("anomaly score")
  ax.set_ylabel("density")
  ax.legend()
  save_figure(fig, path)


def mapping_loss_plot(mean_trajectory: np.ndarray, path: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.plot(np.arange(1, len(mean_trajectory) + 1), mean_trajectory)
  ax.set_xlabel("mapping iteration")
  ax.set_ylabel("mean mapping loss")
  ax.set_yscale("log")
  save_figure(fig, path)


MASK_COLOUR = "lime"  # the outline of the ground-truth mask in the gallery


def gallery(queries, reconstructions, residual_maps, titles, path: str, masks=None) -> None:
  """Columns of query / reconstruction (AnoGAN's G(z*)) / residual map |x - reconstruction|, one
  column per image. `masks` (n, h, w) bool, when the dataset has them: each image's defect
  outlined on its query and its residual map, to compare where the residual is high."""
  n = len(queries)
  fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.4), squeeze=False)
  rows = (("query", to_display(queries), "gray"), ("reconstruction", to_display(reconstructions), "gray"),
          ("residual", np.asarray(residual_maps).mean(axis=-1), "inferno"))
  for r, (label, images, cmap) in enumerate(rows):
    for c in range(n):
      ax = axes[r, c]
      ax.imshow(images[c], cmap=cmap, vmin=0.0, vmax=1.0 if r < 2 else 2.0)
      if masks is not None and r != 1 and np.any(masks[c]):
        ax.contour(np.asarray(masks[c], float), levels=[0.5], colors=MASK_COLOUR, linewidths=0.8)
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(label)
      if r == 0:
        ax.set_title(titles[c], fontsize=7)
  save_figure(fig, path)
