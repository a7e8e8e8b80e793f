"""The decision threshold: which scores count as anomalous.

A score ranks images; a decision needs a threshold. Training holds `--val_fraction` of the normal
training images out (data.validation_split, the split `evaluate --eval_split=val` scores too). At
the end of training the family's scorer scores those held-out normals, and the
`--threshold_percentile` (default 99) of their scores is the threshold: an image is anomalous when
its score is above it, so about 1% of normal images are flagged. The threshold is stored with
the model in <workdir>/threshold.json (written atomically):

  threshold             the percentile of val_scores (numpy's linear interpolation)
  percentile            the --threshold_percentile it was computed at
  n_val                 the number of held-out normal images scored
  scorer                the scorer's settings() when they were scored
  val_scores_quantiles  {"0": min, "1": ..., "50": median, ..., "100": max} of the held-out scores
  val_scores            every held-out score: score, evaluate and export apply another
                        --threshold_percentile from them without mapping again
  weights_sha256        {network: digest of its weights}: the networks that gave the scores
  model                 the --model family
  precision             the --precision the held-out normals were scored in

A threshold applies only to scores computed the same way: the same scorer settings (except
map_batch_size, which changes how many images are mapped at once, not the scores) and the same
weights (a workdir trained further since gets a new threshold when its training ends). `decide`
is the one decision of score, evaluate and export: when the threshold does not apply, score and
evaluate say in one line why and decide nothing, and export (which needs a threshold) fails with
that line unless given --threshold. Scores in another --precision are not compared with it
either (bfloat16 moves a score by about a percent, as much as a threshold's margin): score in
the threshold's precision to decide (a record without the entry is float32's). The mapper's
random start (--map_seed) is not compared: another seed draws scores from the same distribution.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Dict, Optional

import numpy as np

from anogan_tf.config import Config, flag_text
from anogan_tf.errors import AnoganError
from anogan_tf.utils.files import write_text

THRESHOLD_FILE = "threshold.json"
QUANTILES = (0, 1, 5, 25, 50, 75, 95, 99, 100)
# Scorer settings that do not change the scores (batched mapping equals one-by-one to 1e-3).
IGNORED_SETTINGS = ("map_batch_size",)


def path(workdir: str) -> str:
  return os.path.join(workdir, THRESHOLD_FILE)


def percentile_of(val_scores, percentile: float) -> float:
  """The threshold: the `percentile` of the held-out normal scores (numpy's linear interpolation)."""
  return float(np.percentile(np.asarray(val_scores, np.float64), percentile))


def weights_sha256(networks: Dict[str, object]) -> Dict[str, str]:
  """{name: SHA-256 of the network's weights (shapes and float32 bytes, in layer order)}: equal
  for a network and its exported .keras file loaded again, different once it trains further."""
  digests = {}
  for name, network in sorted(networks.items()):
    digest = hashlib.sha256()
    for weight in network.weights:
      value = np.ascontiguousarray(np.asarray(weight), dtype=np.float32)
      digest.update(repr(value.shape).encode())
      digest.update(value.tobytes())
    digests[name] = digest.hexdigest()
  return digests


def compared_settings(settings: dict) -> dict:
  """The scorer settings two sets of scores must share to be compared (JSON round trip: lists)."""
  return {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in IGNORED_SETTINGS}


def make_record(config: Config, val_scores, settings: dict, digests: Dict[str, str]) -> dict:
  """threshold.json's content for the held-out normals' scores `val_scores`."""
  val_scores = np.asarray(val_scores, np.float64)
  return {"threshold": percentile_of(val_scores, config.threshold_percentile),
          "percentile": config.threshold_percentile, "n_val": int(len(val_scores)),
          "scorer": json.loads(json.dumps(settings)),
          "val_scores_quantiles": {str(q): float(np.percentile(val_scores, q)) for q in QUANTILES},
          "model": config.model, "precision": config.precision, "weights_sha256": digests,
          "val_scores": [float(v) for v in val_scores]}


def read(workdir: str) -> Optional[dict]:
  """threshold.json's record, or None when the workdir has none; AnoganError when it is damaged."""
  file = path(workdir)
  if not os.path.exists(file):
    return None
  fix = f"delete it and rerun the train command on {workdir} to compute it again"
  try:
    with open(file, encoding="utf-8") as f:
      record = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise AnoganError(f"{file} is damaged ({type(e).__name__}); {fix}") from None
  try:
    values = [record["threshold"], record["percentile"], *record["val_scores"]]
    ok = (all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
          and len(record["val_scores"]) > 0 and isinstance(record["scorer"], dict)
          and isinstance(record["weights_sha256"], dict))
  except (KeyError, TypeError):
    ok = False
  if not ok:
    raise AnoganError(f"{file} is damaged (a missing or invalid entry); {fix}")
  return record


def validation_normals(config: Config) -> np.ndarray:
  """The held-out normal training images (n, h, w, c) in [-1, 1]: the normals of the validation
  set that `--eval_split=val` evaluates (data.validation_split), all of them."""
  from anogan_tf.data import load_one_class
  data = load_one_class(config.replace(eval_split="val", test_examples=0))
  return data.x_test[data.y_test == 0]


def record_precision(record: dict) -> str:
  """The --precision a record's held-out normals were scored in (float32 before it was recorded)."""
  return record.get("precision", "float32")


def _mismatch(record: dict, settings: dict, digests: Dict[str, str], workdir: str = "",
              precision: str = "float32") -> Optional[str]:
  """Why scores of `settings` and `digests`, computed in `precision`, cannot be compared with the
  record's, and what to do; None when they can."""
  if record_precision(record) != precision:
    return (f"it was computed with --precision={record_precision(record)} and these scores with "
            f"--precision={precision}; score with --precision={record_precision(record)} to decide with it")
  old, new = compared_settings(record["scorer"]), compared_settings(settings)
  for key in sorted(set(old) | set(new)):
    if old.get(key) != new.get(key):
      name = f"--{key}" if key in {f.name for f in dataclasses.fields(Config)} else key
      text = lambda v: "(none)" if v is None else flag_text(tuple(v) if isinstance(v, list) else v)  # noqa: E731
      return (f"it was computed with {name}={text(old.get(key))} and these scores with {name}={text(new.get(key))}; "
              f"score with the workdir's settings (leave {name} out), or rerun train on {workdir} with these "
              "settings to store a threshold for them instead")
  for name, digest in sorted(digests.items()):
    if record["weights_sha256"].get(name, digest) != digest:
      return (f"it was computed with other weights of {name}.keras (the workdir was trained further since); "
              f"rerun the train command on {workdir} to compute it again")
  return None


def store_after_training(config: Config, workdir: str, progress: bool = True,
                         val_normals: Optional[np.ndarray] = None) -> Optional[dict]:
  """End of training (the caller holds the workdir's lock): scores the held-out normals with the
  family's scorer on the exported networks and writes threshold.json; returns its record, or None
  with --val_fraction=0. A record for the same weights and scorer settings is kept as it is (a
  rerun of a finished training maps nothing), or given the new --threshold_percentile from its
  stored scores. A damaged threshold.json is an AnoganError (read), left as it is. `val_normals`:
  the held-out normals, when the caller has them (examples of any shape); else validation_normals."""
  if config.val_fraction <= 0:
    return None
  from tqdm import tqdm

  from anogan_tf import models
  from anogan_tf.engine.workdir import load_networks
  family = models.family(config.model)
  names = family.scoring_networks(config) if hasattr(family, "scoring_networks") else family.NETWORKS
  missing = [name for name in names if not os.path.exists(os.path.join(workdir, f"{name}.keras"))]
  if missing:  # e.g. --initial_z=encoder without --encoder_epochs: the run itself is fine
    from absl import logging
    logging.warning(f"no threshold stored: scoring with these settings needs {missing[0]}.keras, which {workdir} "
                    "does not have")
    return None
  networks = load_networks(workdir, family, config)
  scorer = family.make_scorer(config, networks)
  digests = weights_sha256(networks)
  old = read(workdir)  # damaged: AnoganError naming the fix, not silently computed again
  if old is not None and _mismatch(old, scorer.settings(), digests, precision=config.precision) is None:
    if old["percentile"] == config.threshold_percentile:
      return old
    val_scores = old["val_scores"]
  else:
    images = validation_normals(config) if val_normals is None else val_normals
    val_scores = []
    with tqdm(total=len(images), desc="threshold", unit="img", disable=not progress, dynamic_ncols=True) as bar:
      for chunk in scorer.score_chunks(images):
        val_scores.append(chunk.score)
        bar.update(len(chunk))
    val_scores = np.concatenate(val_scores)
  record = make_record(config, val_scores, scorer.settings(), digests)
  write_text(path(workdir), json.dumps(record, indent=2) + "\n")
  return record


@dataclasses.dataclass(frozen=True)
class Decision:
  """The threshold score and evaluate decide with: `threshold` (None: no decision) and `note`,
  one line saying where it comes from or why there is none."""

  threshold: Optional[float]
  note: str
  percentile: Optional[float] = None
  n_val: int = 0

  def is_anomaly(self, scores) -> Optional[np.ndarray]:
    """(N,) bool: score above the threshold; None without a threshold."""
    return None if self.threshold is None else np.asarray(scores) > self.threshold


def decide(config: Config, workdir: str, settings: dict, networks: Dict[str, object]) -> Decision:
  """The workdir's threshold for scores of a scorer with `settings` on `networks`, at
  --threshold_percentile: the stored one at its own percentile, else that percentile of the
  stored held-out scores. AnoganError when threshold.json is damaged."""
  record = read(workdir)
  if record is None:
    if config.val_fraction <= 0:
      return Decision(None, f"no threshold: {workdir} was trained with --val_fraction=0, so nothing decides which "
                            "scores are anomalous; train with --val_fraction=0.1 to store one")
    return Decision(None, f"no threshold: {path(workdir)} is missing (training has not finished); rerun the train "
                          f"command on {workdir} to compute it")
  why = _mismatch(record, settings, weights_sha256(networks), workdir, config.precision)
  if why:
    return Decision(None, f"the threshold in {path(workdir)} does not apply: {why}")
  p = config.threshold_percentile
  value = float(record["threshold"]) if p == record["percentile"] else percentile_of(record["val_scores"], p)
  n = len(record["val_scores"])
  return Decision(value, f"threshold {value:.6g}: the {p:g}th percentile of {n} held-out normal scores", p, n)


def threshold_metrics(labels, scores, threshold: float) -> dict:
  """precision, recall and F1 (anomalies positive) of flagging score > threshold, by scikit-learn."""
  from sklearn.metrics import precision_recall_fscore_support
  predicted = (np.asarray(scores) > threshold).astype(int)
  precision, recall, f1, _ = precision_recall_fscore_support(np.asarray(labels), predicted, average="binary",
                                                             pos_label=1, zero_division=0)
  return {"threshold": float(threshold), "precision": float(precision), "recall": float(recall), "f1": float(f1),
          "n_flagged": int(predicted.sum())}


def best_f1(labels, scores) -> dict:
  """The threshold with the highest F1 on these very labels, for reference only: it is chosen on
  the evaluated images, so its F1 is optimistic. Returned as a threshold for `score > threshold`
  (halfway between the lowest flagged score and the highest unflagged one)."""
  from sklearn.metrics import precision_recall_curve
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  precision, recall, thresholds = precision_recall_curve(labels, scores)  # flags score >= thresholds[i]
  precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
  total = precision + recall
  f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
  i = int(np.argmax(f1))
  lowest = thresholds[i]
  below = scores[scores < lowest]
  boundary = np.nextafter(lowest, -np.inf) if not len(below) else (lowest + below.max()) / 2
  if not below.max(initial=-np.inf) < boundary < lowest:
    boundary = below.max()  # adjacent floats: score > the highest unflagged one flags the same images
  return threshold_metrics(labels, scores, float(boundary))
