"""Metrics of scores beyond AUROC and AUPRC: the pixel metrics of residual maps against masks
(pixel AUROC, MVTec AD's AUPRO) and the AUROC against each anomalous class alone."""

from __future__ import annotations

import numpy as np

AUPRO_MAX_FPR = 0.3  # MVTec AD's limit: the PRO curve is integrated up to a 30% false positive rate


def anomaly_maps(residual_maps) -> np.ndarray:
  """(n, h, w) float32 per-pixel anomaly scores: the residual |x - reconstruction| averaged over
  channels, as the gallery and score's heatmaps draw it."""
  return np.asarray(residual_maps, np.float32).mean(axis=-1)


def pixel_auroc(masks, maps) -> float:
  """AUROC over every pixel of every image: the masks' pixels positive, ranked by `maps`."""
  from sklearn.metrics import roc_auc_score
  return float(roc_auc_score(np.ravel(masks), np.ravel(maps)))


def pixel_aupro(masks, maps, max_fpr: float = AUPRO_MAX_FPR) -> float:
  """The area under the per-region-overlap (PRO) curve for false positive rates up to `max_fpr`,
  divided by `max_fpr` (1: perfect), as MVTec AD defines it (Bergmann et al., IJCV 2021).

  Regions are the masks' 8-connected components, each image apart. At a threshold t, the PRO is
  the mean over all regions of the share of a region's pixels with map >= t (so a small defect
  counts as much as a large one), and the FPR the share of normal pixels (mask 0, in every image)
  with map >= t. Every distinct map value is a threshold (the exact curve, from (0, 0)); the curve
  is interpolated linearly at `max_fpr`. NaN without regions or without normal pixels."""
  from scipy import ndimage
  masks, maps = np.asarray(masks, bool), np.asarray(maps, np.float32)
  regions = np.zeros(masks.shape, np.int32)  # 0: normal pixel; k: the k-th region, numbered over all images
  count = 0
  for i, mask in enumerate(masks):
    labels, found = ndimage.label(mask, structure=np.ones((3, 3)))
    regions[i] = np.where(labels > 0, labels + count, 0)
    count += found
  sizes = np.bincount(regions.ravel(), minlength=count + 1)
  if count == 0 or sizes[0] == 0:
    return float("nan")
  order = np.argsort(-maps.ravel(), kind="stable")  # thresholds from the highest value down
  ids = regions.ravel()[order]
  fpr = np.cumsum(ids == 0) / sizes[0]
  pro = np.cumsum(np.where(ids > 0, 1.0 / (sizes[ids] * count), 0.0))
  distinct = np.append(np.diff(maps.ravel()[order]) != 0, True)  # equal values are one threshold
  fpr, pro = np.concatenate([[0.0], fpr[distinct]]), np.concatenate([[0.0], pro[distinct]])
  j = np.searchsorted(fpr, max_fpr, side="right")  # fpr[:j] <= max_fpr < fpr[j]
  x, y = fpr[:j], pro[:j]
  if j < len(fpr) and x[-1] < max_fpr:
    y_at = pro[j - 1] + (pro[j] - pro[j - 1]) * (max_fpr - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
    x, y = np.append(x, max_fpr), np.append(y, y_at)
  return float(min(np.trapezoid(y, x) / max_fpr, 1.0))  # the PRO's float sums can pass 1 by a rounding


def pixel_metrics(masks, maps) -> dict:
  """{"pixel_auroc", "pixel_aupro"} of the anomaly maps against the masks, or {} when no pixel is
  anomalous (or none normal): then neither is defined."""
  masks = np.asarray(masks, bool)
  if masks.all() or not masks.any():
    return {}
  return {"pixel_auroc": pixel_auroc(masks, maps), "pixel_aupro": pixel_aupro(masks, maps)}


def auroc_by_class(labels, classes, score) -> dict:
  """{anomalous class: the AUROC of the normal images against that class's images alone}: which
  kinds of anomaly the score finds and which it misses (a folder's classes are its defect
  names). Weighted by each class's count, their mean is the overall AUROC."""
  from sklearn.metrics import roc_auc_score
  labels, classes, score = np.asarray(labels), np.asarray(classes), np.asarray(score)
  normal = labels == 0
  if not normal.any():
    return {}
  out = {}
  for c in np.unique(classes[labels == 1]):
    pick = normal | ((labels == 1) & (classes == c))
    out[str(c)] = float(roc_auc_score(labels[pick], score[pick]))
  return out


def frame_metrics(labels, classes, frame_labels, frame_scores) -> dict:
  """Frame-level metrics of clips: `frame_auroc`, the AUROC of every frame's score against its label
  (frame_labels, frame_scores: (n_clips, T)), and `frame_auroc_by_anomalous_class`: per anomalous
  class, the frames of the normal clips and of that class's clips (whose normal frames, before the
  anomaly begins, count as normal). Empty when the frames hold one label only."""
  from sklearn.metrics import roc_auc_score
  labels, classes = np.asarray(labels), np.asarray(classes)
  frame_labels, frame_scores = np.asarray(frame_labels), np.asarray(frame_scores)
  if len(np.unique(frame_labels)) < 2:
    return {}
  by_class = {}
  for c in np.unique(classes[labels == 1]):
    pick = (labels == 0) | ((labels == 1) & (classes == c))
    if len(np.unique(frame_labels[pick])) == 2:
      by_class[str(c)] = float(roc_auc_score(frame_labels[pick].ravel(), frame_scores[pick].ravel()))
  return {"frame_auroc": float(roc_auc_score(frame_labels.ravel(), frame_scores.ravel())),
          "frame_auroc_by_anomalous_class": by_class, "n_frames": int(frame_labels.size),
          "n_abnormal_frames": int(frame_labels.sum())}
