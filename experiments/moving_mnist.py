"""Moving MNIST results: the ConvLSTM autoencoder (experiments/convlstm_ae.flags) beside the `ae` and
`vae` families applied to single frames, clip- and frame-level AUROC per kind of anomaly, for some seeds.

  python experiments/moving_mnist.py --seeds=0,1,2 --root=/tmp/moving_mnist

writes experiments/results/moving_mnist_convlstm_ae.json, .md and the first seed's evaluation gallery
(_gallery.png) after each seed, so a run cut short leaves the seeds it finished.

  python experiments/moving_mnist.py --split=val --seeds=0 --tag=NAME

evaluates on the validation clips instead (--eval_split=val: the normal clips held out of training
and as many anomalous clips made from MNIST's training digits, never the test clips) and writes
moving_mnist_convlstm_ae_tune[_NAME].json/.md: what the preset's settings are chosen on. Per seed:
- convlstm_ae: trained with the preset (train_lib.train), evaluated with evaluate_lib.evaluate
  (clip AUROC from the clip score, the mean of the per-frame errors; frame AUROC from the
  per-frame errors e(t)).
- ae and vae on frames (FRAME_PRESETS): experiments/ae.flags' and vae.flags' networks for 64x64 frames
  (--image_size=64), each trained on every frame of the same normal training clips (batches of 256
  frames and the presets' errors; the learning rates of
  convlstm_ae and as many epochs as show each frame as often as convlstm_ae's windows do:
  epochs x clip_window / clip_length); a frame's score is the model's score of that frame alone, a clip's the mean over
  its frames: the same assembly as convlstm_ae's, so the two differ only in what the model sees.
All train on the same clips (the preset's --seed) and are scored on the same test clips.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
RESULTS = os.path.join(ROOT, "experiments", "results")

import report  # noqa: E402  (experiments/report.py)
import reproduce  # noqa: E402  (resolve_config, commit, cpu_model, as_a_command)

PRESET = "experiments/convlstm_ae.flags"
AE_PRESET = "experiments/ae.flags"
# The image families applied to single frames, beside convlstm_ae: --model -> its preset.
FRAME_PRESETS = {"ae": AE_PRESET, "vae": "experiments/vae.flags"}


def training_rate(history, n_clips: int) -> float:
  """Clips (sequences) per second over the epochs' own seconds."""
  return round(n_clips * len(history) / sum(row["seconds"] for row in history), 3)


def run_convlstm(config, workdir: str) -> dict:
  from anogan_tf import evaluate_lib, train_lib
  from anogan_tf.data import load_one_class
  began = time.time()
  data = load_one_class(config)
  history = train_lib.train(config, workdir, data=data, progress=False)
  metrics = evaluate_lib.evaluate(config, workdir, data=data, progress=False)
  keep = ("auroc", "auroc_by_anomalous_class", "frame_auroc", "frame_auroc_by_anomalous_class", "n_normal",
          "n_anomalous", "n_frames", "n_abnormal_frames")
  return {**{k: metrics[k] for k in keep}, "train_clips_per_second": training_rate(history, len(data.x_train)),
          "score_clips_per_second": metrics["images_per_second"], "final_loss": history[-1]["loss"],
          "wall_seconds": round(time.time() - began, 1)}


def run_on_frames(config, clip_config, workdir: str) -> dict:
  from sklearn.metrics import roc_auc_score

  from anogan_tf import models, train_lib
  from anogan_tf.data import OneClassData, load_one_class
  from anogan_tf.engine.workdir import load_scorer
  from anogan_tf.evaluation.metrics import auroc_by_class, frame_metrics
  began = time.time()
  clips = load_one_class(clip_config)
  length = clip_config.clip_length
  frames = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
  data = OneClassData(x_train=frames(clips.x_train), x_test=frames(clips.x_test),
                      y_test=clips.frame_labels.reshape(-1), classes_test=np.repeat(clips.classes_test, length),
                      test_indices=np.arange(clips.frame_labels.size), x_val=frames(clips.x_val))
  history = train_lib.train(config, workdir, data=data, progress=False)
  scorer, _ = load_scorer(config, workdir, models.family(config.model))
  t = time.perf_counter()
  frame_scores = scorer.score(data.x_test).score.reshape(-1, length)
  seconds = time.perf_counter() - t
  clip_scores = frame_scores.mean(axis=1)
  out = {"auroc": float(roc_auc_score(clips.y_test, clip_scores)),
         "auroc_by_anomalous_class": auroc_by_class(clips.y_test, clips.classes_test, clip_scores),
         **frame_metrics(clips.y_test, clips.classes_test, clips.frame_labels, frame_scores),
         "train_clips_per_second": training_rate(history, len(clips.x_train)),
         "score_clips_per_second": round(len(clip_scores) / seconds, 3), "final_loss": history[-1]["loss"],
         "wall_seconds": round(time.time() - began, 1)}
  return out


def mean_std(values):
  return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def summary(runs: dict) -> dict:
  """model -> {clip/frame AUROC overall and per kind: mean, std, values over seeds}."""
  out = {}
  for model, per_seed in runs.items():
    seeds = sorted(per_seed)
    rows = [per_seed[s] for s in seeds]
    kinds = sorted(rows[0]["auroc_by_anomalous_class"])
    out[model] = {"seeds": seeds,
                  "clip_auroc": mean_std([r["auroc"] for r in rows]),
                  "frame_auroc": mean_std([r["frame_auroc"] for r in rows]),
                  "clip_auroc_by_kind": {k: mean_std([r["auroc_by_anomalous_class"][k] for r in rows]) for k in kinds},
                  "frame_auroc_by_kind": {k: mean_std([r["frame_auroc_by_anomalous_class"][k] for r in rows])
                                          for k in kinds},
                  "train_clips_per_second": mean_std([r["train_clips_per_second"] for r in rows]),
                  "score_clips_per_second": mean_std([r["score_clips_per_second"] for r in rows])}
  return out


def markdown(record: dict) -> str:
  s = record["summary"]
  if record.get("split") == "val":
    evaluated = (f"Validation (--eval_split=val, not the test clips): {record['test_clips']} clips, the normal "
                 "clips held out of each seed's training clips and as many anomalous ones, the four kinds in equal "
                 "shares, from MNIST's training digits")
  else:
    evaluated = (f"Test: {record['test_clips']} clips (half normal, the other half the four kinds in equal shares), "
                 "the same for every seed")
  models = list(s)
  kinds = list(next(iter(s.values()))["frame_auroc_by_kind"])
  pct = lambda d: f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"  # noqa: E731
  lines = ["# Moving MNIST: ConvLSTM autoencoder vs the frame-by-frame autoencoder", "",
           f"AUROC x100, mean ± std over seeds {', '.join(map(str, record['seeds']))} ({len(record['seeds'])} "
           f"seed{'s' * (len(record['seeds']) > 1)}). {evaluated}. Clip score: the mean of the frames' errors; frame score: the frame's reconstruction error (convlstm_ae: from its windows; ae and vae: of the "
           "frame alone). Per kind: the normal clips against that kind's clips (frame level: every frame of "
           "them, labelled per frame).", "",
           "| level | model | all | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
  for level in ("frame", "clip"):
    for model in models:
      lines.append(f"| {level} | {model} | {pct(s[model][f'{level}_auroc'])} | "
                   + " | ".join(pct(s[model][f"{level}_auroc_by_kind"][k]) for k in kinds) + " |")
  lines += ["", "| model | training clips/s | scoring clips/s |", "|---|---|---|"]
  for model in models:
    lines.append(f"| {model} | {s[model]['train_clips_per_second']['mean']:.1f} | "
                 f"{s[model]['score_clips_per_second']['mean']:.1f} |")
  lines += ["", "Clips per second: 20-frame clips (training: one 10-frame window per clip and step for "
            "convlstm_ae, all 20 frames as images for ae and vae), on a CPU shared with other jobs, niced.", "",
            f"Commit {record['commit']}, {record['cpu']}, {record['wall_seconds']:.0f} s wall in all.", "",
            "Commands:", ""] + [f"    {c}" for c in record["commands"]] + [""]
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--root", default="/tmp/moving_mnist_runs", help="where the workdirs go")
  parser.add_argument("--out", default=RESULTS)
  parser.add_argument("--extra", default="", help="more flags for both models, comma-free, space-separated")
  parser.add_argument("--split", default="test", choices=("test", "val"),
                      help="test: the test clips; val: the validation clips (tuning), written as _tune[_TAG]")
  parser.add_argument("--tag", default="", help="with --split=val: a name for this setting's files")
  args = parser.parse_args()
  extra = args.extra.split()
  seeds = [int(s) for s in args.seeds.split(",")]
  began = time.time()
  runs = {"convlstm_ae": {}, **{f"{name} (single frames)": {} for name in FRAME_PRESETS}}
  if args.split == "val":
    extra = ["--eval_split=val", *extra]
  stem = "moving_mnist_convlstm_ae" + ("_tune" + f"_{args.tag}" * bool(args.tag)) * (args.split == "val")
  commands = [f"python experiments/moving_mnist.py --seeds={args.seeds}"
              + f" --split={args.split}" * (args.split != "test") + f" --tag={args.tag}" * bool(args.tag)
              + f" --extra='{args.extra}'" * bool(args.extra)]
  test_clips = None
  for seed in seeds:
    clip_config = reproduce.resolve_config(PRESET, [f"--seed={seed}", *extra])
    workdir = os.path.join(args.root, stem, f"convlstm_ae_{seed}")
    runs["convlstm_ae"][seed] = run_convlstm(clip_config, workdir)
    if seed == seeds[0]:
      os.makedirs(args.out, exist_ok=True)
      shutil.copyfile(os.path.join(workdir, "eval", "gallery.png"), os.path.join(args.out, f"{stem}_gallery.png"))
    test_clips = runs["convlstm_ae"][seed]["n_normal"] + runs["convlstm_ae"][seed]["n_anomalous"]
    # ae sees every frame of a clip per epoch, convlstm_ae one window: as many epochs as see as many frames
    share = clip_config.clip_window / clip_config.clip_length
    schedule = [f"--{k}={v}" for k, v in (("epochs", max(1, round(clip_config.epochs * share))),
                                          ("batch_size", 256), ("lr", clip_config.lr),
                                          ("lr_decay_epoch", round(clip_config.lr_decay_epoch * share)),
                                          ("lr_after_decay", clip_config.lr_after_decay))]
    for name, preset in FRAME_PRESETS.items():
      frame_config = reproduce.resolve_config(preset, ["--image_size=64", "--normal_classes=0,1,2,3,4,5,6,7",
                                             f"--seed={seed}", "--val_fraction=0.1", "--map_batch_size=256",
                                             *schedule, *extra])
      runs[f"{name} (single frames)"][seed] = run_on_frames(
          frame_config, clip_config, os.path.join(args.root, stem, f"{name}_frames_{seed}"))
    record = {"seeds": sorted(runs["convlstm_ae"]), "summary": summary(runs), "runs": runs,
              "split": args.split, "test_clips": test_clips, "preset": PRESET, "frame_presets": FRAME_PRESETS,
              "frame_flags": ["--image_size=64", *schedule, "--val_fraction=0.1"],
              "commit": reproduce.commit(), "cpu": reproduce.cpu_model(), "wall_seconds": round(time.time() - began, 1),
              "commands": commands}
    os.makedirs(args.out, exist_ok=True)
    report.write_json_and_md(os.path.join(args.out, stem), json.loads(json.dumps(record, default=str)), markdown(record))
    print(json.dumps(record["summary"], indent=1), flush=True)


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
