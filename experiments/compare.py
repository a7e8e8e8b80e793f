"""`make compare`: every method of the family on the one-class protocol, and their scoring speed.

  python experiments/compare.py --dataset=mnist --classes=all --seeds=0 --results_dir=experiments/results

1. Runs experiments/reproduce.py for the methods (anogan, anogan_warm_<K>, egbad, ae, vae): one
   workdir per (method's GAN, class, seed), resumable; the warm starts score the anogan method's
   GAN after training its encoder, so they compare like with like.
2. Measures scoring speed in one process, for all methods on the same test images: each scorer is
   built, run once on a chunk of that size (tracing, excluded), then timed on the images; the
   rounds alternate between methods and the fastest round counts.
3. Writes `<results_dir>/compare_<dataset>.json` (method -> mean_auroc, per_class_auroc,
   images_per_second, ...; every top-level key is a method) and `.md`.

Progress on stderr as reproduce.py shows it (the runs, their commands' bars), then the speed runs'
bar; no TensorFlow start-up notices.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import report  # noqa: E402
import reproduce  # noqa: E402

# A method that is a reproduction preset under another name: its runs are that preset's records
# (trained and scored once for both tables). `anogan` is seed 000's AnoGAN as `seed000` runs it;
# `anogan_best` is best.flags (seed 000's GAN, its encoder, the residual at E(x) over the ink).
SAME_AS_PRESET = {"anogan": "seed000", "anogan_best": "best"}
METHODS = (*reproduce.METHODS, "anogan_best")
# Methods whose training is the GAN's and then the warm-start encoder's.
ENCODER_METHODS = tuple(m for m in METHODS if m.startswith("anogan_warm_") or m == "anogan_best")
SIZE_NOTE = ("networks of seed 000's size in every method: G / decoder = seed 000's generator (86,049 "
             "weights), D / encoder convolutions = seed 000's discriminator's (16, 32 filters)")


def measure_speed(dataset: str, methods, workdirs: dict, n_images: int, rounds: int, extra=()) -> dict:
  """images/s of each method's scorer on the same n_images test images, measured in this process."""
  from tqdm import tqdm

  from anogan_tf import models
  from anogan_tf.cli import flags as anogan_flags
  from anogan_tf.config import EVALUATION_FIELDS
  from anogan_tf.data import load_one_class
  from anogan_tf.engine.workdir import load_networks
  scorers = {}
  images = None
  bar = tqdm(total=len(methods) * (1 + rounds), desc="speed", unit="run", dynamic_ncols=True)  # stderr
  for method in methods:
    bar.set_postfix_str(method)
    flagfile, _, eval_flags = reproduce.RUNS[SAME_AS_PRESET.get(method, method)]
    trained = anogan_flags.workdir_config(workdirs[method])
    requested = anogan_flags.config_from_args([f"--flagfile={flagfile}", *eval_flags, f"--dataset={dataset}",
                                               f"--normal_classes={','.join(map(str, trained.normal_classes))}",
                                               f"--seed={trained.seed}", *extra, f"--test_examples={n_images}"])
    # The workdir's settings with the method's scoring settings (its GAN may carry the warm
    # starts' encoder settings, which the plain method's flagfile does not name).
    config = trained.replace(**{name: getattr(requested, name) for name in EVALUATION_FIELDS})
    family = models.family(config.model)
    scorer = family.make_scorer(config, load_networks(workdirs[method], family))
    if images is None:
      images = load_one_class(config).x_test
    scorer.score(images[:min(len(images), scorer.batch_size)])  # trace once, untimed
    scorers[method] = scorer
    bar.update()
  best = {m: 0.0 for m in methods}
  for _ in range(rounds):
    for method in methods:
      bar.set_postfix_str(method)
      began = time.perf_counter()
      scorers[method].score(images)
      best[method] = max(best[method], len(images) / (time.perf_counter() - began))
      bar.update()  # outside the timed call
  bar.close()
  return {m: round(v, 3) for m, v in best.items()}


def selected(dataset: str, classes: str, seeds: str):
  """([class], [seed]) from --classes ('all' or a comma/space-separated list) and --seeds."""
  split = lambda text: [int(t) for t in text.replace(",", " ").split() if t]  # noqa: E731
  return (list(range(reproduce.CLASSES[dataset])) if classes == "all" else split(classes)), split(seeds)


def record_workdir(record: dict) -> str:
  """The workdir a per-run record's evaluation scored (its --workdir=)."""
  return next(t.split("=", 1)[1] for t in shlex.split(record["eval_command"]) if t.startswith("--workdir="))


def method_records(results_dir: str, dataset: str, method: str, classes, seeds) -> list:
  """The method's per-run records for these classes and seeds only. anogan and anogan_best share
  their records with the reproduction presets seed000 and best, which hold more seeds: every
  method of the table must be averaged over the same runs."""
  return [r for r in report.load_records(results_dir, dataset, SAME_AS_PRESET.get(method, method))
          if r["class"] in classes and r["seed"] in seeds]


def train_times(method: str, records) -> dict:
  """mean_train_seconds and median_train_seconds over a method's runs; the warm starts' and
  anogan_best's training is the GAN's and then their encoder's. The table shows the median: one
  run trained while the machine was busy (or paused) inflates the mean."""
  seconds = [r["train_seconds"] + (r.get("encoder_seconds", 0.0) if method in ENCODER_METHODS else 0.0)
             for r in records]
  return {"mean_train_seconds": float(np.mean(seconds)), "median_train_seconds": float(np.median(seconds))}


def markdown(summary: dict) -> str:
  """The table of a compare_<dataset>.json (method -> its entry; the shared details are in each)."""
  about = next(iter(summary.values()))
  dataset, classes, sizes = about["dataset"], about["classes"], about.get("test_images", [])
  split = "whole test split" if sizes == [10000] else f"{', '.join(map(str, sizes))} test images"
  lines = [f"# {dataset}: the AnoGAN family on one protocol", "",
           f"One-class AUROC (%) per normal class, {split}, seeds "
           f"{', '.join(map(str, about['seeds']))}; scoring speed measured in one process on the same "
           f"{about['speed_images']} test images for every method ({SIZE_NOTE}).", "",
           "| method | " + " | ".join(str(c) for c in classes) + " | mean | AUPRC (normal +) | train s, median (GAN + encoder) | images/s | x anogan |",
           "| --- | " + " | ".join("---" for _ in classes) + " | --- | --- | --- | --- | --- |"]
  base_speed = summary.get("anogan", {}).get("images_per_second")
  for method, m in summary.items():
    row = [f"{100 * m['per_class_auroc'][str(c)]:.1f}" if str(c) in m["per_class_auroc"] else "" for c in classes]
    speed = m.get("images_per_second")
    ratio = f"{speed / base_speed:.0f}x" if speed and base_speed else ""
    lines.append(f"| {method} | " + " | ".join(row) + f" | **{100 * m['mean_auroc']:.1f}** | "
                 f"{m['mean_auprc_normal']:.3f} | {m['median_train_seconds']:.0f} | "
                 f"{f'{speed:,.0f}' if speed is not None else ''} | {ratio} |")
  lines += ["", f"Command: `{about['command']}`. Commits of the runs: {', '.join(about['commits'])}; "
            f"speeds measured at {about['speed_commit']} on {about['speed_measured']} (class "
            f"{about['speed_class']}, seed {about['speed_seed']}: its networks for every method).",
            "Per-run records: `runs/<dataset>_<method>/` beside this file (anogan's: `runs/<dataset>_seed000/`)."]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--classes", default="all")
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--runs_dir", default="runs")
  parser.add_argument("--results_dir", default="runs/results")
  parser.add_argument("--speed_images", type=int, default=1000)
  parser.add_argument("--speed_rounds", type=int, default=2)
  parser.add_argument("--extra", default="", help="more flags for train and evaluate (quick runs)")
  parser.add_argument("--encoder_epochs", type=int, default=reproduce.WARM_ENCODER_EPOCHS,
                      help="epochs of the encoder that the warm starts and anogan_best share (one per GAN; "
                           "best.flags' own value is the default)")
  args = parser.parse_args(argv)
  methods = [m for m in args.methods.replace(",", " ").split() if m]
  for name in ENCODER_METHODS:  # they score one GAN, so they share one encoder
    flagfile, train_flags, eval_flags = reproduce.RUNS[SAME_AS_PRESET.get(name, name)]
    epochs = f"--encoder_epochs={args.encoder_epochs}"  # evaluate too: best.flags names its own
    reproduce.RUNS[SAME_AS_PRESET.get(name, name)] = (flagfile, [epochs], [*eval_flags, epochs])
  preset = lambda m: SAME_AS_PRESET.get(m, m)  # noqa: E731
  code = reproduce.main([f"--dataset={args.dataset}", f"--presets={','.join(map(preset, methods))}", f"--classes={args.classes}",
                         f"--seeds={args.seeds}", f"--runs_dir={args.runs_dir}", f"--results_dir={args.results_dir}",
                         f"--extra={args.extra}"])
  if code:
    return code
  classes, seeds = selected(args.dataset, args.classes, args.seeds)
  records = {m: method_records(args.results_dir, args.dataset, m, classes, seeds) for m in methods}
  summaries = {m: report.summarize(records[m]) for m in methods}
  # The speed run uses the first class and seed's workdirs.
  first = summaries[methods[0]]
  c, seed = first["classes"][0], first["seeds"][0]
  workdirs = {}
  for m in methods:
    match = [r for r in records[m] if r["class"] == c and r["seed"] == seed]
    workdirs[m] = record_workdir(match[0])
  speed_commit, measured = reproduce.commit(), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
  speeds = measure_speed(args.dataset, methods, workdirs, args.speed_images, args.speed_rounds,
                         [f for f in shlex.split(args.extra) if not f.startswith("--encoder_epochs")])
  sizes = sorted({r["n_normal"] + r["n_anomalous"] for m in methods
                  for r in records[m]})
  # method -> its entry (DESIGN.md section 4); what the methods share is repeated in each entry,
  # so that every top-level key is a method.
  shared = {"dataset": args.dataset, "classes": first["classes"], "seeds": first["seeds"], "test_images": sizes,
            "speed_images": args.speed_images, "speed_class": c, "speed_seed": seed, "networks": SIZE_NOTE,
            "command": shlex.join(["python", "experiments/compare.py", *(sys.argv[1:] if argv is None else argv)]),
            "commits": sorted({x for s in summaries.values() for x in s["commits"]}),
            "speed_commit": speed_commit, "speed_measured": measured}
  out = {}
  for m in methods:
    s = summaries[m]
    out[m] = {
        "mean_auroc": s["mean_auroc"],
        "per_class_auroc": {k: v["auroc_mean"] for k, v in s["per_class"].items()},
        "mean_auprc": s["mean_auprc"], "mean_auprc_normal": s["mean_auprc_normal"],
        **train_times(m, records[m]),
        "images_per_second": speeds[m], "n_runs": s["n_runs"], **shared}
  base = os.path.join(args.results_dir, f"compare_{args.dataset}")
  report.write_json_and_md(base, out, markdown(out))
  print(f"table: {base}.md")
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
