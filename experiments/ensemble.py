"""An ensemble of detectors: each member's score in units of its own spread on held-out normal images.

Members are evaluations of trained workdirs on the same images (evaluate's scores.csv: index,
label, class, score, ...). Each member's score s becomes

    (s - mean(v)) / std(v),   v = the member's scores of held-out normal images

(the `--val_fraction` of the normal training images that training did not see, scored with the same
settings as s: an `evaluate --eval_split=val` of the same workdir, whose label-0 rows they are), so
detectors whose scores have different scales and offsets count alike, and the ensemble's score is
the mean over the members. Only normal images held out of training set the scales: no anomaly and
no label of the evaluated images. experiments/reproduce.py's ENSEMBLES and experiments/tune.py's
ensemble candidates build their records with `record`.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, Sequence

import numpy as np


def _error(message: str) -> Exception:
  """anogan_tf's one-line error, imported when raised: importing this module (reproduce.py does, before
  its __main__ quiets TensorFlow) must not load anogan_tf and with it TensorFlow."""
  from anogan_tf.errors import AnoganError
  return AnoganError(message)


def read_scores(eval_dir: str) -> Dict[str, np.ndarray]:
  """{"index", "label", "class", "score"} of `eval_dir`/scores.csv, in its row order."""
  path = os.path.join(eval_dir, "scores.csv")
  if not os.path.isfile(path):
    raise _error(f"{path} is missing; evaluate that workdir into {eval_dir} first")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise _error(f"{path} has no scores; evaluate that workdir into {eval_dir} again")
  return {"index": np.array([int(r["index"]) for r in rows]), "label": np.array([int(r["label"]) for r in rows]),
          "class": np.array([r["class"] for r in rows]), "score": np.array([float(r["score"]) for r in rows])}


def normaliser(scores: Dict[str, np.ndarray], held_out_dir: str):
  """(mean, std) of the held-out normal images' scores: `scores`, read from `held_out_dir` (an
  --eval_split=val evaluation)."""
  normal = scores["score"][scores["label"] == 0]
  if len(normal) < 2 or not np.isfinite(normal).all() or np.std(normal) == 0:
    raise _error(f"{held_out_dir}/scores.csv needs two or more finite, distinct scores of held-out normals; "
                      "train the workdir with --val_fraction and evaluate it with --eval_split=val")
  return float(np.mean(normal)), float(np.std(normal))


def combine(eval_dirs: Sequence[str], held_out_dirs: Sequence[str]) -> Dict[str, np.ndarray]:
  """The members' evaluations (the same images, in the same order) and their held-out normals'
  evaluations -> {"index", "label", "class", "score"}: the mean of the normalised scores."""
  if not eval_dirs or len(eval_dirs) != len(held_out_dirs):
    raise _error("an ensemble needs one or more members, each with its held-out normals' evaluation")
  read = {d: read_scores(d) for d in dict.fromkeys([*eval_dirs, *held_out_dirs])}  # a member's own val split: once
  members = [read[d] for d in eval_dirs]
  first = members[0]
  for d, m in zip(eval_dirs[1:], members[1:]):
    if not (np.array_equal(m["index"], first["index"]) and np.array_equal(m["label"], first["label"])):
      raise _error(f"{d}/scores.csv scores other images than {eval_dirs[0]}/scores.csv; evaluate every "
                        "member on the same split")
  scales = [normaliser(read[d], d) for d in held_out_dirs]
  normalised = [(m["score"] - mean) / std for m, (mean, std) in zip(members, scales)]
  return {**{k: first[k] for k in ("index", "label", "class")}, "score": np.mean(normalised, axis=0)}


def metrics(combined: Dict[str, np.ndarray]) -> dict:
  """evaluate's ranking metrics of the combined score: auroc, auprc (anomalies positive),
  auprc_normal (normals positive), auroc_by_anomalous_class, n_normal, n_anomalous."""
  from sklearn.metrics import average_precision_score, roc_auc_score

  from anogan_tf.evaluation.metrics import auroc_by_class
  labels, score = combined["label"], combined["score"]
  return {"auroc": float(roc_auc_score(labels, score)), "auprc": float(average_precision_score(labels, score)),
          "auprc_normal": float(average_precision_score(1 - labels, -score)),
          "auroc_by_anomalous_class": auroc_by_class(labels, combined["class"], score),
          "n_normal": int(np.sum(labels == 0)), "n_anomalous": int(np.sum(labels == 1))}


def record(members: Sequence[dict]) -> dict:
  """The ensemble's record fields from its members' ({"name", "eval_dir", "held_out_dir", "record"}: the
  member's evaluation, its held-out normals' evaluation and its own record): the metrics, the summed
  training and scoring times of the members, and what was combined."""
  combined = combine([m["eval_dir"] for m in members], [m["held_out_dir"] for m in members])
  seconds = sum(m["record"]["seconds"] for m in members)
  n = len(combined["score"])
  return {**metrics(combined), "seconds": round(seconds, 3), "images_per_second": round(n / seconds, 3),
          "train_seconds": sum(m["record"]["train_seconds"] + m["record"].get("encoder_seconds", 0) for m in members),
          "members": [m["name"] for m in members],
          "normalisation": "each member's score minus the mean of its held-out normals' scores, over their std; "
                           "the mean over members",
          "member_auroc": {m["name"]: m["record"]["auroc"] for m in members}}
