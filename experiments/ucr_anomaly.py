"""The LSTM autoencoder on a series of the UCR Time Series Anomaly Archive (KDD Cup 2021 layout).

The file name gives the normal training part [0, train end) and the anomaly's span (data/ucr.py).
Sliding windows of --window steps (stride 1) of the training part train the LSTM autoencoder
(experiments/lstm_ae.flags' networks), the values scaled by the training part's min and max as
--dataset=ucr scales (data.ucr.scale). Every window of the whole series is scored; the score of a
time step is the mean, over the windows that hold it, of its squared residual there. The archive's
rule: the one location a detector names (here the highest-scoring step) is right when it falls
within 100 points of the anomaly's span. Also the per-step AUROC (steps in the span positive) and a
plot of the series, the score and the labelled span.

  python experiments/ucr_anomaly.py   # experiments/results/ucr_anomaly_lstm_ae.json, .md, .png
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (experiments/report.py)
import reproduce  # noqa: E402
import ucr as ucr_experiment  # noqa: E402  (config_for)

DEFAULT_SERIES = "135_UCR_Anomaly_InternalBleeding16_1200_4187_4199.txt"
TOLERANCE = 100  # the archive's rule: within 100 points of the span


def windows(values: np.ndarray, width: int) -> np.ndarray:
  """(n - width + 1, width, 1): every window of `width` consecutive values, stride 1."""
  return np.lib.stride_tricks.sliding_window_view(values, width)[..., None].astype(np.float32)


def per_step_score(residual_maps: np.ndarray, n: int) -> np.ndarray:
  """(n,): for each step the mean over the windows holding it of their squared residual there."""
  width = residual_maps.shape[1]
  total, count = np.zeros(n), np.zeros(n)
  squared = residual_maps[..., 0].astype(np.float64) ** 2
  for offset in range(width):
    total[offset:offset + len(squared)] += squared[:, offset]
    count[offset:offset + len(squared)] += 1
  return total / count


def hit(location: int, begin: int, end: int, tolerance: int = TOLERANCE) -> bool:
  """The archive's rule: `location` within `tolerance` points of [begin, end)."""
  return begin - tolerance <= location < end + tolerance


def plot(series, score, begin: int, end: int, train_end: int, location: int, path: str, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.6), sharex=True, gridspec_kw=dict(height_ratios=(2, 1)))
  steps = np.arange(len(series))
  top.plot(steps, series, lw=0.5, color="tab:blue")
  bottom.plot(steps, score, lw=0.6, color="tab:red")
  for ax in (top, bottom):
    ax.axvspan(begin, end, color="orange", alpha=0.35, label="labelled anomaly")
    ax.axvspan(0, train_end, color="gray", alpha=0.12, label="training part")
    ax.axvline(location, color="black", lw=0.8, ls="--", label="highest score")
  top.set_ylabel("value")
  bottom.set_ylabel("score per step")
  bottom.set_xlabel("time step")
  top.legend(loc="upper right", fontsize=7)
  top.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--path", default=os.path.join(os.environ.get("ANOGAN_DATA_DIR", ""), "ucr", DEFAULT_SERIES))
  parser.add_argument("--window", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--flagfile", default="experiments/lstm_ae.flags")
  parser.add_argument("--results_dir", default="experiments/results")
  args = parser.parse_args(argv)
  from sklearn.metrics import roc_auc_score

  from anogan_tf import models, train_lib
  from anogan_tf.data import OneClassData, ucr
  from anogan_tf.engine.workdir import load_scorer
  started = time.time()
  archive = ucr.read_anomaly_series(args.path)
  low, high = float(archive.values[:archive.train_end].min()), float(archive.values[:archive.train_end].max())
  scaled = ucr.scale(archive.values, low, high)
  train = windows(scaled[:archive.train_end], args.window)
  every = windows(scaled, args.window)
  labels = np.zeros(len(scaled), int)
  labels[archive.begin:archive.end] = 1
  runs = []
  for seed in [int(s) for s in args.seeds.split(",")]:
    config = ucr_experiment.config_for(args.flagfile, "", archive.name, 0, seed, False, dict(
        series_length=args.window, series_features=1, series_range=(low, high), epochs=args.epochs))
    data = OneClassData(x_train=train, x_test=every[:0], y_test=np.zeros(0, int), classes_test=np.zeros(0, int),
                        test_indices=np.zeros(0, int))
    workdir = tempfile.mkdtemp(prefix="ucr_anomaly_")
    t0 = time.time()
    train_lib.train(config, workdir, overwrite=True, data=data, progress=False)
    train_seconds = time.time() - t0
    scorer, _ = load_scorer(config, workdir, models.family(config.model))
    t0 = time.time()
    result = scorer.score(every)
    score_seconds = time.time() - t0
    score = per_step_score(result.residual_map, len(scaled))
    score[:archive.train_end] = np.nan  # the detector names a location after the training part
    test = slice(archive.train_end, None)
    location = int(archive.train_end + np.nanargmax(score[test]))
    runs.append({"seed": seed, "location": location, "hit": hit(location, archive.begin, archive.end),
                 "distance_to_span": int(max(archive.begin - location, location - (archive.end - 1), 0)),
                 "per_step_auroc": float(roc_auc_score(labels[test], score[test])),
                 "train_windows_per_second": len(train) * args.epochs / train_seconds,
                 "score_windows_per_second": len(every) / score_seconds, "score": score})
    reproduce.note(f"seed {seed}: location {location} ({'hit' if runs[-1]['hit'] else 'miss'}), per-step AUROC "
                   f"{runs[-1]['per_step_auroc']:.4f}")
  base = os.path.join(args.results_dir, "ucr_anomaly_lstm_ae")
  first = runs[0]
  plot(archive.values, first["score"], archive.begin, archive.end, archive.train_end, first["location"], base + ".png",
       f"{os.path.basename(args.path)}: lstm_ae, window {args.window}, seed {first['seed']}: highest score at "
       f"{first['location']} ({'within' if first['hit'] else 'not within'} {TOLERANCE} of [{archive.begin}, "
       f"{archive.end})), per-step AUROC {first['per_step_auroc']:.3f}")
  out = {"series": os.path.basename(args.path), "train_end": archive.train_end,
         "anomaly": [archive.begin, archive.end], "window": args.window, "epochs": args.epochs,
         "hits": sum(r["hit"] for r in runs), "runs": [{k: v for k, v in r.items() if k != "score"} for r in runs],
         "mean_per_step_auroc": float(np.mean([r["per_step_auroc"] for r in runs])),
         "command": "python experiments/ucr_anomaly.py " + " ".join(argv if argv is not None else sys.argv[1:]),
         "flagfile": args.flagfile, "commit": reproduce.commit(), "wall_seconds": time.time() - started,
         "cpu": reproduce.cpu_model()}
  lines = [f"# LSTM autoencoder on {out['series']} (UCR Anomaly Archive)", "",
           f"Training part [0, {archive.train_end}), anomaly [{archive.begin}, {archive.end}); windows of "
           f"{args.window} steps (stride 1), {args.epochs} epochs, the preset's networks; score per step = mean "
           "squared residual over the windows holding it.", "",
           "| seed | highest score at | within 100 of the span | per-step AUROC | train windows/s | score windows/s |",
           "| --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {r['seed']} | {r['location']} | {'yes' if r['hit'] else 'no'} | {r['per_step_auroc']:.4f} | "
            f"{r['train_windows_per_second']:.0f} | {r['score_windows_per_second']:.0f} |" for r in runs]
  lines += ["", "![series, score and labelled span](ucr_anomaly_lstm_ae.png)", "",
            f"Command: `{out['command']}`; commit {out['commit']}, wall time {out['wall_seconds'] / 60:.1f} min, "
            f"CPU {out['cpu']}.", ""]
  report.write_json_and_md(base, out, "\n".join(lines))
  print(f"table: {base}.md")
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
