"""One-class evaluation: map the test split, score every image, write metrics and figures."""

from __future__ import annotations

import csv
import json
import os
import re
import time

import numpy as np
from tqdm import tqdm

from anogan_tf import plots
from anogan_tf.config import Config
from anogan_tf.data import load_one_class
from anogan_tf.errors import AnoganError
from anogan_tf.faults import fault_point
from anogan_tf.io_utils import DirectoryLock, atomic_path, write_text
from anogan_tf.mapper import LatentMapper

GALLERY_SIZE = 8
EVAL_FILES = ("scores.csv", "roc.png", "pr.png", "score_histogram.png", "mapping_loss.png", "gallery.png",
              "metrics.json")  # in the order written: metrics.json last, as the mark of a complete eval/


def load_models(workdir: str):
  """The trained generator and discriminator of a workdir (its .keras files)."""
  import keras
  import anogan_tf  # noqa: F401  registers the classes with Keras
  models = []
  for name in ("generator", "discriminator"):
    path = os.path.join(workdir, f"{name}.keras")
    if not os.path.exists(path):
      raise AnoganError(f"{path} is missing; train first: python -m anogan_tf.train --workdir={workdir} ...")
    try:
      models.append(keras.models.load_model(path))
    except Exception as e:  # Keras raises many types for damaged archives
      raise AnoganError(f"{path} cannot be loaded ({type(e).__name__}); rerun training on the workdir "
                        "to export it again") from None
  return tuple(models)


def lock_eval(workdir: str, out_dir: str = "") -> DirectoryLock:
  """Creates the evaluation folder (default workdir/eval/) and locks it: one evaluate at a time
  writes there."""
  out_dir = out_dir or os.path.join(workdir, "eval")
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise AnoganError(f"cannot create {out_dir} ({e.strerror}); make the workdir writable") from None
  return DirectoryLock(out_dir, f"another evaluate is running on {workdir}; wait for it to finish "
                                "(or stop it) and run evaluate again")


def evaluate(config: Config, workdir: str, data=None, progress: bool = True, out_dir: str = "") -> dict:
  """Scores the test split with the workdir's models; writes `out_dir` (default workdir/eval/)
  and returns the metrics. Another `out_dir` keeps evaluations with other mapping settings apart.

  Models and data are loaded and checked before eval/ is touched. eval/ is locked while this
  runs (a second evaluate on the workdir fails at once), every file is written atomically,
  and metrics.json is removed first and written last: when it exists, the files beside it
  all come from the same, complete evaluation.
  """
  if config.deterministic:
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
  generator, discriminator = load_models(workdir)
  data = data if data is not None else load_one_class(config)
  labels = data.y_test
  if len(np.unique(labels)) < 2:
    raise AnoganError("the test images hold only one label, so AUROC is undefined; use more --test_examples")
  out_dir = out_dir or os.path.join(workdir, "eval")
  with lock_eval(workdir, out_dir):
    return _evaluate(config, out_dir, data, generator, discriminator, progress)


_TEMPORARY = re.compile(r"^\..+\.tmp\d+(\.\w+)?$")


def _evaluate(config, out_dir, data, generator, discriminator, progress) -> dict:
  from sklearn.metrics import average_precision_score, roc_auc_score
  labels = data.y_test
  for name in os.listdir(out_dir):  # what a killed evaluate left half-written
    if _TEMPORARY.match(name):
      os.remove(os.path.join(out_dir, name))

  mapper = LatentMapper(generator, discriminator, **config.mapper_kwargs())
  n = len(data.x_test)
  score, residual, discrimination, z = [], [], [], []
  trajectory_sum = np.zeros(sum(config.map_steps))
  began = time.perf_counter()
  with tqdm(total=n, desc="map", unit="img", disable=not progress, dynamic_ncols=True) as bar:
    for result in mapper.map_chunks(data.x_test):  # one trace for the whole split
      score.append(result.score)
      residual.append(result.residual)
      discrimination.append(result.discrimination)
      z.append(result.z)
      trajectory_sum += result.trajectory.sum(axis=0)
      bar.update(len(result))
  seconds = time.perf_counter() - began
  score, residual, discrimination, z = map(np.concatenate, (score, residual, discrimination, z))
  fault_point("map")

  auroc = float(roc_auc_score(labels, score))
  auprc = float(average_precision_score(labels, score))
  # Anomalies are ~90% of a one-class MNIST test split, so anomaly-positive AUPRC starts near 0.9
  # by chance; with the normals as positives (low score = normal) its chance level is ~0.1.
  auprc_normal = float(average_precision_score(1 - labels, -score))
  metrics = {"auroc": auroc, "auprc": auprc, "auprc_normal": auprc_normal, "n_normal": int(np.sum(labels == 0)),
             "n_anomalous": int(np.sum(labels == 1)), "seconds": round(seconds, 3),
             "images_per_second": round(n / seconds, 3), "dataset": config.dataset,
             "normal_classes": list(config.normal_classes), "lam": config.lam,
             "map_steps": list(config.map_steps), "map_lrs": list(config.map_lrs), "seed": config.seed,
             "feature_layer": mapper.feature_layer, "map_reduction": config.map_reduction,
             "z_init": config.z_init, "z_init_std": config.z_init_std,
             "map_batch_size": mapper.batch_size,  # the one used (0 asks for automatic)
             # the mapping's Adam: epsilon is --adam_epsilon; the betas are LatentMapper's (0.9, 0.999),
             # not --adam_beta_1/2, which only training uses
             "map_adam_beta_1": mapper.adam_beta_1, "map_adam_beta_2": mapper.adam_beta_2,
             "map_adam_epsilon": mapper.adam_epsilon,
             "test_examples": n, "eval_split": data.split, "val_fraction": config.val_fraction}
  metrics_path = os.path.join(out_dir, "metrics.json")
  if os.path.exists(metrics_path):
    os.remove(metrics_path)  # eval/ is incomplete until the new one is written, last
  with atomic_path(os.path.join(out_dir, "scores.csv")) as tmp:
    with open(tmp, "w", newline="") as f:
      writer = csv.writer(f, lineterminator="\n")
      writer.writerow(("index", "label", "class", "score", "residual", "discrimination"))
      writer.writerows((i, l, c, f"{s:.8g}", f"{r:.8g}", f"{d:.8g}") for i, l, c, s, r, d in
                       zip(data.test_indices, labels, data.classes_test, score, residual, discrimination))
  fault_point("eval_write")

  plots.roc_pr_plots(labels, score, auroc, auprc, out_dir)
  plots.score_histogram(labels, score, os.path.join(out_dir, "score_histogram.png"))
  plots.mapping_loss_plot(trajectory_sum / n, os.path.join(out_dir, "mapping_loss.png"))
  order = np.argsort(score)
  k = min(GALLERY_SIZE, n // 2) or 1
  chosen = np.concatenate([order[::-1][:k], order[:k]])  # most anomalous, then least
  generated = generator(z[chosen], training=False).numpy()
  queries = data.x_test[chosen]
  titles = [f"{'top' if i < k else 'low'} {score[j]:.3f}\nclass {data.classes_test[j]}"
            for i, j in enumerate(chosen)]
  plots.gallery(queries, generated, np.abs(queries - generated), titles,
                os.path.join(out_dir, "gallery.png"))
  write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
  return metrics
