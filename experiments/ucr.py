"""The LSTM autoencoder on the UCR archive's one-class protocol, with the 1-NN baselines on the same splits.

Protocol (Mauceri, Sweeney & McDermott 2020): for each dataset and each class in turn, train on that
class's TRAIN series, score every TEST series, anomalies = the other classes; AUROC; the mean over
the classes (and here over --seeds). Baselines on the same splits and the same scaled series
(data/ucr.py; a shared affine map changes no nearest neighbour): the anomaly score of a test series
is its distance to the nearest TRAIN series of the normal class, Euclidean (scikit-learn's
NearestNeighbors) or dynamic time warping (`dtw_distances`, full window). The published 1-NN
numbers of Mauceri et al. are beside them.

  python experiments/ucr.py                       # experiments/results/ucr_lstm_ae.json and .md
  python experiments/ucr.py --tune --seeds=0      # validation split of TRAIN only: ucr_lstm_ae_tune.*

--tune evaluates on --eval_split=val (30% of the normal TRAIN series held out, against as many TRAIN
series of the other classes) and never reads TEST: what the preset's settings were chosen on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reproduce  # noqa: E402  (commit, cpu_model, as_a_command, note)

DATASETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead", "Coffee", "Trace")
# Mauceri et al. 2020, 1NN-RawData-AUROC.csv: AUROC x 100, (Euclidean, DTW).
PUBLISHED_1NN = {"GunPoint": (84.59, 87.64), "ItalyPowerDemand": (88.68, 81.64), "ArrowHead": (76.79, 74.42),
                 "Coffee": (96.15, 95.90), "Trace": (93.63, 98.71)}


def dtw_distances(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
  """(q, r) DTW distances between univariate series (q, T) and (r, T): the square root of the
  smallest sum of squared differences along a warping path (full window), all pairs at once,
  one anti-diagonal of the cost matrix at a time."""
  a, b = queries[:, None, :], references[None, :, :]
  steps = queries.shape[1]
  cost = (a[..., :, None] - b[..., None, :]) ** 2  # (q, r, T, T)
  total = np.full(cost.shape, np.inf)
  for d in range(2 * steps - 1):
    i = np.arange(max(0, d - steps + 1), min(d, steps - 1) + 1)
    j = d - i
    if d == 0:
      total[..., 0, 0] = cost[..., 0, 0]
      continue
    best = np.full(cost.shape[:2] + (len(i),), np.inf)
    up, left = i - 1 >= 0, j - 1 >= 0
    diag = up & left
    best[..., diag] = np.minimum(best[..., diag], total[..., i[diag] - 1, j[diag] - 1])
    best[..., up] = np.minimum(best[..., up], total[..., i[up] - 1, j[up]])
    best[..., left] = np.minimum(best[..., left], total[..., i[left], j[left] - 1])
    total[..., i, j] = cost[..., i, j] + best
  return np.sqrt(total[..., -1, -1])


def nn_scores(x_train: np.ndarray, x_test: np.ndarray) -> dict:
  """{"euclidean", "dtw"}: each test series' distance to its nearest training series."""
  from sklearn.neighbors import NearestNeighbors
  train, test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
  euclidean = NearestNeighbors(n_neighbors=1).fit(train).kneighbors(test)[0][:, 0]
  dtw = np.concatenate([dtw_distances(test[i:i + 8], train).min(axis=1) for i in range(0, len(test), 8)])
  return {"euclidean": euclidean, "dtw": dtw}


def classes_of(data_dir: str, name: str) -> list:
  from anogan_tf.data import ucr
  labels, _ = ucr.read_tsv(os.path.join(data_dir, name, f"{name}_TRAIN.tsv"))
  return sorted(set(labels.tolist()))


def config_for(flagfile: str, data_dir: str, name: str, normal: int, seed: int, tune: bool, extra: dict):
  from anogan_tf import Config
  from anogan_tf.config import flag_text
  values = {}
  for line in open(flagfile).read().splitlines():
    if line.strip() and not line.strip().startswith("#"):
      key, _, value = line.strip().lstrip("-").partition("=")
      values[key] = value
  changes = dict(data_dir=data_dir, ucr_name=name, normal_classes=(normal,), seed=seed, **extra)
  if tune:
    changes.update(val_fraction=0.3, eval_split="val")
  return Config.from_strings({**values, **{k: flag_text(v) for k, v in changes.items()}})


def run_one(config, workdir: str) -> dict:
  """Trains and evaluates one workdir; {auroc, train seconds, sequences trained, scoring speed}."""
  from anogan_tf import evaluate_lib, train_lib
  from anogan_tf.data import load_one_class, resolve_shape
  config = resolve_shape(config)
  data = load_one_class(config)
  start = time.time()
  train_lib.train(config, workdir, overwrite=True, data=data, progress=False)
  seconds = time.time() - start
  metrics = evaluate_lib.evaluate(config, workdir, data=data, progress=False)
  return {"auroc": metrics["auroc"], "train_seconds": seconds, "train_sequences": len(data.x_train) * config.epochs,
          "scored_per_second": metrics["images_per_second"], "data": data}


def markdown(out: dict, tune: bool) -> str:
  meta = next(iter(out.values()))
  lines = [f"# LSTM autoencoder on UCR one-class ({'validation split of TRAIN: tuning' if tune else 'TEST'})", "",
           "AUROC x 100, mean over the classes taken in turn as normal"
           + (f" and seeds {', '.join(map(str, meta['seeds']))}" if len(meta["seeds"]) > 1 else "")
           + "; 1-NN baselines measured on the same splits, and as published (Mauceri et al. 2020).", "",
           "| dataset | lstm_ae | 1-NN Euclidean (ours) | 1-NN DTW (ours) | 1-NN Euclidean (published) "
           "| 1-NN DTW (published) | > Euclidean | > DTW |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name, s in out.items():
    ours = 100 * s["mean_auroc"]
    e, d = PUBLISHED_1NN.get(name, (float("nan"), float("nan")))
    lines.append(f"| {name} | {ours:.2f} +- {100 * s['std_auroc_over_seeds']:.2f} | "
                 f"{100 * s['baselines']['euclidean']['mean_auroc']:.2f} | {100 * s['baselines']['dtw']['mean_auroc']:.2f}"
                 f" | {e:.2f} | {d:.2f} | {'yes' if ours > e else 'no'} | {'yes' if ours > d else 'no'} |")
  lines += ["", "`> Euclidean` / `> DTW`: above the published 1-NN numbers; +- is the standard deviation over seeds "
            "of the mean over classes.", "", "Per class (AUROC x 100 per seed; baselines Euclidean / DTW):", ""]
  for name, s in out.items():
    for c, v in s["per_class"].items():
      lines.append(f"- {name} class {c}: {', '.join(f'{100 * a:.1f}' for a in v['auroc'])}  "
                   f"(1-NN {100 * v['euclidean_auroc']:.1f} / {100 * v['dtw_auroc']:.1f})")
  lines += ["", f"Sequences per second (mean over runs): training "
            f"{np.mean([s['train_sequences_per_second'] for s in out.values()]):.0f}, scoring "
            f"{np.mean([s['score_sequences_per_second'] for s in out.values()]):.0f}; per dataset in the .json.", "",
            f"Command: `{meta['command']}`", "", f"Preset: `{meta['flagfile']}`; settings beyond it: "
            f"`{json.dumps(meta['overrides'])}`", "",
            f"Commit {meta['commit']}, wall time {meta['wall_seconds'] / 60:.1f} min, CPU {meta['cpu']}.", ""]
  return "\n".join(lines)


def summarize(names, classes, runs, baselines, seeds, tune: bool) -> dict:
  """dataset name -> mean_auroc (over classes and seeds), per_class (class -> auroc per seed, the
  1-NN AUROCs), the baselines' means beside the published ones, sequences per second."""
  out = {}
  for name in names:
    per_class = {str(c): {"auroc": [r["auroc"] for r in runs[(name, c)]],
                          "auroc_mean": float(np.mean([r["auroc"] for r in runs[(name, c)]])), **baselines[(name, c)]}
                 for c in classes[name]}
    by_seed = [np.mean([v["auroc"][i] for v in per_class.values()]) for i in range(len(seeds))]
    finished = [r for c in classes[name] for r in runs[(name, c)]]
    out[name] = {
        "mean_auroc": float(np.mean(by_seed)), "std_auroc_over_seeds": float(np.std(by_seed)),
        "seeds": list(seeds), "per_class": per_class,
        "baselines": {k: {"mean_auroc": float(np.mean([v[f"{k}_auroc"] for v in per_class.values()])),
                          "published_auroc_x100": PUBLISHED_1NN.get(name, (None, None))[i]}
                      for i, k in enumerate(("euclidean", "dtw"))},
        "train_sequences_per_second": float(np.mean([r["train_sequences"] / r["train_seconds"] for r in finished])),
        "score_sequences_per_second": float(np.mean([r["scored_per_second"] for r in finished])),
        "split": "validation (TRAIN only)" if tune else "test",
    }
  return out


def reproduce_write(base: str, out: dict, text: str) -> None:
  """<base>.json and <base>.md, each replaced whole."""
  for path, content in ((base + ".json", json.dumps(out, indent=2)), (base + ".md", text)):
    with open(path + ".tmp", "w") as f:
      f.write(content)
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=os.path.join(os.environ.get("ANOGAN_DATA_DIR", ""), "ucr"))
  parser.add_argument("--datasets", default=",".join(DATASETS))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--flagfile", default="experiments/lstm_ae.flags")
  parser.add_argument("--set", default="", help="settings beyond the flagfile, e.g. lstm_units=32,latent_dim=8 "
                                                "(semicolon-separated name=value)")
  parser.add_argument("--tune", action="store_true", help="validation split of TRAIN only (never TEST)")
  parser.add_argument("--results_dir", default="experiments/results")
  parser.add_argument("--name", default="", help="results file name (default ucr_lstm_ae or ucr_lstm_ae_tune)")
  parser.add_argument("--workdirs", default="", help="where the runs' workdirs go (default: a temporary folder)")
  args = parser.parse_args(argv)
  import typing

  from anogan_tf import Config
  from anogan_tf.config import parse_value  # noqa: F401 (imports anogan_tf: TensorFlow after quieting)
  hints = typing.get_type_hints(Config)
  extra = {}
  for item in filter(None, args.set.split(";")):
    key, _, value = item.partition("=")
    extra[key] = parse_value(key, hints[key], value)
  seeds = [int(s) for s in args.seeds.split(",")]
  root = args.workdirs or tempfile.mkdtemp(prefix="ucr_runs_")
  started = time.time()
  from sklearn.metrics import roc_auc_score
  names = args.datasets.split(",")
  classes = {name: classes_of(args.data_dir, name) for name in names}
  runs = {}  # (name, class) -> [run summary per finished seed]
  baselines = {}  # (name, class) -> the 1-NN AUROCs and the split's sizes
  base = os.path.join(args.results_dir, args.name or ("ucr_lstm_ae_tune" if args.tune else "ucr_lstm_ae"))
  os.makedirs(args.results_dir, exist_ok=True)
  # Seeds outermost: after each seed every dataset and class has as many seeds as the others, and
  # the results files are rewritten with the seeds finished so far.
  for seed in seeds:
    for name in names:
      for normal in classes[name]:
        config = config_for(args.flagfile, args.data_dir, name, normal, seed, args.tune, extra)
        workdir = os.path.join(root, f"{name}_{normal}_{seed}")
        run = run_one(config, workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        data = run.pop("data")  # the split is the same for every seed (no --test_examples subset)
        runs.setdefault((name, normal), []).append(run)
        if (name, normal) not in baselines:
          nn = nn_scores(data.x_train, data.x_test)
          baselines[(name, normal)] = {
              "euclidean_auroc": float(roc_auc_score(data.y_test, nn["euclidean"])),
              "dtw_auroc": float(roc_auc_score(data.y_test, nn["dtw"])),
              "n_train": int(len(data.x_train)), "n_normal": int((data.y_test == 0).sum()),
              "n_anomalous": int((data.y_test == 1).sum())}
        reproduce.note(f"{name} class {normal} seed {seed}: AUROC {run['auroc']:.4f} "
                       f"({run['train_seconds']:.0f} s training)")
    done = seeds[:seeds.index(seed) + 1]
    out = summarize(names, classes, runs, baselines, done, args.tune)
    meta = {"command": "python experiments/ucr.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "flagfile": args.flagfile, "overrides": {k: str(v) for k, v in extra.items()},
            "commit": reproduce.commit(), "wall_seconds": time.time() - started, "cpu": reproduce.cpu_model(),
            "seeds_requested": seeds}
    for entry in out.values():
      entry.update(meta)
    reproduce_write(base, out, markdown(out, args.tune))
    print(f"table: {base}.md (seeds {done})", flush=True)
  if not args.workdirs:
    shutil.rmtree(root, ignore_errors=True)
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
