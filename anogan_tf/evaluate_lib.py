"""One-class evaluation, the same for every model family: score the test split with the family's
scorer, write metrics and figures. For a folder dataset with masks, also where: the pixel metrics
of the residual maps (pixel_auroc, pixel_aupro) and the masks outlined in the gallery."""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import numpy as np
from tqdm import tqdm

from anogan_tf import models
from anogan_tf.config import Config
from anogan_tf.data import load_one_class
from anogan_tf.engine.workdir import load_scorer, lock_eval
from anogan_tf.errors import AnoganError
from anogan_tf.evaluation import threshold
from anogan_tf.evaluation.metrics import anomaly_maps, auroc_by_class, frame_metrics, pixel_metrics
from anogan_tf.nn import precision
from anogan_tf.utils.faults import fault_point
from anogan_tf.utils.files import exact, write_scores_csv, write_text
from anogan_tf.visualization import plots, summaries

GALLERY_SIZE = 8
# in the order written: metrics.json last, as the mark of a complete eval/
EVAL_FILES = ("scores.csv", "roc.png", "pr.png", "score_histogram.png", "mapping_loss.png", "gallery.png",
              summaries.TENSORBOARD, "metrics.json")
# mapping_loss.png only for a scorer with a per-iteration trajectory (AnoGAN's search)
TRAJECTORY_FILES = ("mapping_loss.png",)


def evaluate(config: Config, workdir: str, data=None, progress: bool = True, out_dir: str = "") -> dict:
  """Scores the test split with the workdir's `config.model` family; writes `out_dir` (default
  workdir/eval/) and returns the metrics. Another `out_dir` keeps evaluations with other scoring
  settings apart.

  Models and data are loaded and checked before eval/ is touched. eval/ is locked while this
  runs (a second evaluate on the workdir fails at once), every file is written atomically,
  and metrics.json is removed first and written last: when it exists, the files beside it
  all come from the same, complete evaluation.
  """
  if config.deterministic:
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
  scorer, networks = load_scorer(config, workdir, models.family(config.model))  # before the data: fail fast
  data = data if data is not None else load_one_class(config)
  labels = data.y_test
  if len(np.unique(labels)) < 2 and config.dataset == "folder" and data.split == "val":
    raise AnoganError("a folder dataset's validation set is its held-out train/good/ images only (train/ has no "
                      "anomalies), so AUROC is undefined; use --eval_split=test")
  if len(np.unique(labels)) < 2:
    raise AnoganError("the test images hold only one label, so AUROC is undefined; use more --test_examples")
  decision = threshold.decide(config, workdir, scorer.settings(), networks)
  out_dir = out_dir or os.path.join(workdir, "eval")
  with lock_eval(workdir, out_dir):
    return _evaluate(config, out_dir, data, scorer, progress, decision)


_TEMPORARY = re.compile(r"^\..+\.tmp\d+(\.\w+)?$")  # files, and summaries' temporary events folder


# --- pixel metrics: does the residual map point at the defect? (folder datasets with masks)


class _Extremes:
  """The k highest- and k lowest-scoring images seen so far, with their reconstructions and
  residual maps, kept while the chunks stream by (memory: 2k images, not the whole split).
  Ties go to the later index among the highest and the earlier among the lowest, as a stable
  sort of the whole split orders them."""

  def __init__(self, k: int):
    self.k = k
    self.index = np.zeros(0, int)
    self.score = np.zeros(0)
    self.reconstruction = self.residual_map = None

  def add(self, first: int, result) -> None:
    index = np.concatenate([self.index, first + np.arange(len(result))])
    score = np.concatenate([self.score, result.score])
    arrays = [result.reconstruction, result.residual_map]
    if self.reconstruction is not None:
      arrays = [np.concatenate([old, new]) for old, new in zip((self.reconstruction, self.residual_map), arrays)]
    order = np.argsort(score, kind="stable")  # candidates are in index order, so ties keep it
    keep = np.unique(np.concatenate([order[:self.k], order[::-1][:self.k]]))  # ascending: index order kept
    self.index, self.score = index[keep], score[keep]
    self.reconstruction, self.residual_map = (a[keep] for a in arrays)

  def chosen(self):
    """(indices, reconstructions, residual maps): the k most anomalous (highest first), then the
    k least (lowest first)."""
    order = np.argsort(self.score, kind="stable")
    rows = np.concatenate([order[::-1][:self.k], order[:self.k]])
    return self.index[rows], self.reconstruction[rows], self.residual_map[rows]


def _short(name: str) -> str:
  """A folder dataset's test picture in a gallery title: <defect>/<file> (test/ dropped)."""
  return name.split(os.sep, 1)[1] if name.startswith("test" + os.sep) else name


def _evaluate(config, out_dir, data, scorer, progress, decision: threshold.Decision) -> dict:
  from sklearn.metrics import average_precision_score, roc_auc_score
  labels = data.y_test
  for name in os.listdir(out_dir):  # what a killed evaluate left half-written
    if _TEMPORARY.match(name):
      path = os.path.join(out_dir, name)
      shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

  n = len(data.x_test)
  k = min(GALLERY_SIZE, n // 2) or 1
  extremes = _Extremes(k)
  scores, parts, trajectory_sum, frame_scores = [], {}, None, []
  maps = [] if data.masks is not None else None  # per-pixel anomaly maps, for the pixel metrics
  began = time.perf_counter()
  with tqdm(total=n, desc="score", unit="img", disable=not progress, dynamic_ncols=True) as bar:
    for result in scorer.score_chunks(data.x_test):  # one trace for the whole split
      extremes.add(sum(len(s) for s in scores), result)
      scores.append(result.score)
      for key, values in result.parts.items():
        parts.setdefault(key, []).append(values)
      if maps is not None:
        maps.append(anomaly_maps(result.residual_map))
      if "frame_scores" in result.extras:  # clips: a score per frame
        frame_scores.append(result.extras["frame_scores"])
      if "trajectory" in result.extras:
        chunk_sum = result.extras["trajectory"].sum(axis=0)
        trajectory_sum = chunk_sum if trajectory_sum is None else trajectory_sum + chunk_sum
      bar.update(len(result))
  seconds = time.perf_counter() - began
  score = np.concatenate(scores)
  parts = {key: np.concatenate(values) for key, values in parts.items()}
  fault_point("map")

  auroc = float(roc_auc_score(labels, score))
  auprc = float(average_precision_score(labels, score))
  # Anomalies are ~90% of a one-class MNIST test split, so anomaly-positive AUPRC starts near 0.9
  # by chance; with the normals as positives (low score = normal) its chance level is ~0.1.
  auprc_normal = float(average_precision_score(1 - labels, -score))
  metrics = {"auroc": auroc, "auprc": auprc, "auprc_normal": auprc_normal,
             "auroc_by_anomalous_class": auroc_by_class(labels, data.classes_test, score),
             "n_normal": int(np.sum(labels == 0)),
             "n_anomalous": int(np.sum(labels == 1)), "seconds": round(seconds, 3),
             "images_per_second": round(n / seconds, 3), "strategy": config.strategy, "model": config.model,
             "dataset": config.dataset,
             "normal_classes": list(config.normal_classes), "seed": config.seed, "map_seed": config.search_seed,
             **scorer.settings(),  # every setting that changes the scores, as the scorer applied it
             "test_examples": n, "eval_split": data.split, "val_fraction": config.val_fraction,
             **precision.record(config.precision)}  # compute_precision, cpu, cpu_bf16
  if config.dataset == "folder":  # where: the residual maps against the masks
    metrics["image_shape"] = list(config.image_shape)
    pixel = pixel_metrics(data.masks, np.concatenate(maps)) if maps is not None else {}
    metrics.update(pixel or {"pixel_metrics": "skipped: " + (data.pixel_note or "no anomalous pixels in the masks")})
  if frame_scores and data.frame_labels is not None:  # clips with frame labels: which frames are abnormal
    metrics.update(frame_metrics(labels, data.classes_test, data.frame_labels, np.concatenate(frame_scores)))
  # The decision: at the workdir's threshold (threshold.json) when it applies to these scores,
  # and, for reference, the threshold with the best F1 chosen on these very labels.
  metrics["threshold_note"] = decision.note
  if decision.threshold is not None:
    metrics.update(threshold.threshold_metrics(labels, score, decision.threshold),
                   threshold_percentile=decision.percentile, threshold_n_val=decision.n_val)
  metrics["best_f1_on_eval_split"] = threshold.best_f1(labels, score)
  metrics_path = os.path.join(out_dir, "metrics.json")
  if os.path.exists(metrics_path):
    os.remove(metrics_path)  # eval/ is incomplete until the new one is written, last
  # a folder dataset's pictures also by name: their path under --data_dir, the last column
  files = [()] * n if data.names is None else [(name,) for name in data.names]
  write_scores_csv(os.path.join(out_dir, "scores.csv"),
                   ("index", "label", "class", "score") + tuple(parts) + ("file",) * (data.names is not None),
                   [(i, label, c, *(exact(v) for v in values), *f) for i, label, c, f, *values in
                    zip(data.test_indices, labels, data.classes_test, files, score, *parts.values())])
  fault_point("eval_write")

  plots.roc_pr_plots(labels, score, auroc, auprc, out_dir)
  plots.score_histogram(labels, score, os.path.join(out_dir, "score_histogram.png"))
  trajectory_plot = os.path.join(out_dir, "mapping_loss.png")
  if trajectory_sum is not None:
    plots.mapping_loss_plot(trajectory_sum / n, trajectory_plot)
  elif os.path.exists(trajectory_plot):
    os.remove(trajectory_plot)  # from an evaluation of another family: not of these scores
  chosen, reconstructions, residual_maps = extremes.chosen()
  titles = [f"{'top' if i < k else 'low'} {score[j]:.3f}\n"
            + (f"class {data.classes_test[j]}" if data.names is None else _short(data.names[j]))
            for i, j in enumerate(chosen)]
  if data.x_test.ndim == 3:  # series: each with its reconstruction, and the residual over time
    plots.series_gallery(data.x_test[chosen], reconstructions, residual_maps, titles,
                         os.path.join(out_dir, "gallery.png"), columns=max(1, len(chosen) // 2))
  else:  # images as they are; other examples as the pictures that show them
    pictures = plots.as_pictures(data.x_test[chosen], reconstructions, residual_maps)
    plots.gallery(*pictures, titles, os.path.join(out_dir, "gallery.png"),
                  masks=None if data.masks is None else data.masks[chosen], residual_is_error=scorer.residual_is_error)
  summaries.evaluation(os.path.join(out_dir, summaries.TENSORBOARD), labels, score,
                       None if trajectory_sum is None else trajectory_sum / n)
  write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
  return metrics
