"""The picture benchmark's runner: train a preset on every category, evaluate it, tabulate.

  python experiments/pictures.py --preset=defaults --seeds=0,1,2 --split=val [--categories=brick,coins]
  python experiments/pictures.py --preset=anogan --seeds=0 --split=test --results_dir=experiments/results

The benchmark (experiments/pictures_benchmark.py; needs scikit-image: pip install -e .[pictures]) is
built into --data_root first when its manifest.json is missing. A preset NAME is the flagfile
experiments/pictures_NAME.flags (`pictures` is experiments/pictures.flags, the shipped one); `defaults`
is no flagfile: today's defaults (seed 000's networks deepened for 64 pixels, the AnoGAN family) with
docs/your-own-images.md's starting schedule (`DEFAULTS_FLAGS`). --flagfile names another file.

For every seed, then every category: train `RUNS_DIR/<preset>/<category>_seed<s>` on
`DATA_ROOT/<category>` (its train/good/), then evaluate it on the split: `--split=val` scores the
validation pictures (`DATA_ROOT/<category>/validation`, good and defective, from a box of the
photograph disjoint from both training and test; what presets are tuned on), `--split=test` the test
pictures. One training serves both splits. Each run's record (metrics.json's image AUROC `auroc`,
`pixel_auroc`, `pixel_aupro`, with the commands, commit, wall times) goes to
`RESULTS_DIR/runs/pictures_<preset>/<split>/<category>_seed<s>.json`; a run whose record exists is
not redone, so rerunning the command resumes (a killed training resumes from its last epoch). After
each run the tables are rewritten: `RESULTS_DIR/pictures_<preset>.json/.md` for the test split,
`pictures_<preset>_val.json/.md` for the validation split: per category and per seed, the mean and
the standard deviation over seeds, and the mean over categories.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import pictures_benchmark  # noqa: E402
import report  # noqa: E402  (experiments/report.py)
import reproduce  # noqa: E402

# Today's defaults: the docs' starting schedule for a few hundred pictures (docs/your-own-images.md).
DEFAULTS_FLAGS = ["--batch_size=32", "--epochs=100", "--lr_decay_epoch=75"]
METRICS = ("auroc", "pixel_auroc", "pixel_aupro")
SPLIT_DIRS = {"val": "validation", "test": ""}


def preset_flagfile(preset: str) -> str:
  """The preset's flagfile relative to the repository ('' for `defaults`)."""
  if preset == "defaults":
    return ""
  return "experiments/pictures.flags" if preset == "pictures" else f"experiments/pictures_{preset}.flags"


def table_base(results_dir: str, preset: str, split: str) -> str:
  """The table's path without .json / .md."""
  return os.path.join(results_dir, f"pictures_{preset}" + ("_val" if split == "val" else ""))


def spread(values):
  return statistics.stdev(values) if len(values) > 1 else 0.0


def write_tables(results_dir: str, preset: str, split: str, categories, seeds) -> str:
  """pictures_<preset>[_val].json/.md from the records there: per category, per seed, mean ± std."""
  folder = os.path.join(results_dir, "runs", f"pictures_{preset}", split)
  records = {}
  for category in categories:
    for seed in seeds:
      path = os.path.join(folder, f"{category}_seed{seed}.json")
      if os.path.exists(path):
        with open(path) as f:
          records[(category, seed)] = json.load(f)
  if not records:
    return ""
  per_category = {}
  for category in categories:
    runs = {seed: records[(category, seed)] for seed in seeds if (category, seed) in records}
    if not runs:
      continue
    entry = {"seeds": sorted(runs), "per_seed": {str(s): {m: r.get(m) for m in METRICS} for s, r in runs.items()},
             "train_seconds": {str(s): r.get("train_seconds") for s, r in runs.items()}}
    for metric in METRICS:
      values = [r[metric] for r in runs.values() if r.get(metric) is not None]
      if values:
        entry[metric] = {"mean": statistics.fmean(values), "std": spread(values)}
    by_defect = {}
    for r in runs.values():
      for defect, value in (r.get("metrics") or {}).get("auroc_by_anomalous_class", {}).items():
        by_defect.setdefault(defect, []).append(value)
    if by_defect:
      entry["auroc_by_defect"] = {d: statistics.fmean(v) for d, v in by_defect.items()}  # mean over seeds
    per_category[category] = entry
  complete = [c for c in per_category if len(per_category[c]["seeds"]) == len(seeds)]
  means = {}
  for metric in METRICS:
    values = [per_category[c][metric]["mean"] for c in complete if metric in per_category[c]]
    if values and len(complete) == len(categories):
      means[metric] = statistics.fmean(values)
  any_record = next(iter(records.values()))
  # the flagfile(s) the runs trained with (--flagfile may name another than the preset's)
  flagfiles = sorted({r.get("flagfile", preset_flagfile(preset)) for r in records.values()})
  table = {"preset": preset, "flagfile": ", ".join(filter(None, flagfiles)), "split": split, "seeds": list(seeds),
           "categories": list(categories), "mean_over_categories": means, "per_category": per_category,
           "runs_done": len(records), "runs_total": len(categories) * len(seeds),
           "commit": sorted({r.get("train_commit", "?") for r in records.values()}),
           # runs resumed or added later may come from other commands and machines: each of them, once
           "cpu": "; ".join(sorted({str(r.get("cpu")) for r in records.values()})),
           "command": "`, `".join(sorted({str(r.get("runner_command")) for r in records.values()})),
           "data": any_record.get("data")}
  show = lambda d: f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}" if d else "-"  # noqa: E731
  lines = [f"# Picture benchmark, preset `{preset}`, {'validation' if split == 'val' else 'test'} split", "",
           f"Flagfile: `{table['flagfile'] or '(none: defaults, ' + ' '.join(DEFAULTS_FLAGS) + ')'}`. "
           f"Seeds {', '.join(map(str, seeds))}; {table['runs_done']} of {table['runs_total']} runs done. "
           f"Mean ± standard deviation over seeds, in percent.", "",
           f"Command: `{table['command']}`  ", f"Commit: {', '.join(table['commit'])}; CPU: {table['cpu']}", "",
           "| category | image AUROC | pixel AUROC | AUPRO | per seed (image / pixel / AUPRO) | train s "
           "| image AUROC per defect |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for category, entry in per_category.items():
    per_seed = "; ".join(f"{s}: " + " / ".join("-" if v[m] is None else f"{100 * v[m]:.1f}" for m in METRICS)
                         for s, v in entry["per_seed"].items())
    seconds = ", ".join(f"{v:.0f}" for v in entry["train_seconds"].values() if v is not None)  # G and D
    defects = ", ".join(f"{d} {100 * v:.1f}" for d, v in entry.get("auroc_by_defect", {}).items())
    lines.append(f"| {category} | " + " | ".join(show(entry.get(m)) for m in METRICS)
                 + f" | {per_seed} | {seconds} | {defects} |")
  if means:
    lines.append("| **mean** | " + " | ".join(f"{100 * means[m]:.1f}" if m in means else "-" for m in METRICS)
                 + " | | | |")
  base = table_base(results_dir, preset, split)
  report.write_json_and_md(base, table, "\n".join(lines) + "\n")
  return base + ".md"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="defaults", help="defaults | pictures | NAME of experiments/pictures_NAME.flags")
  parser.add_argument("--flagfile", default="", help="another flagfile for the preset (default: from --preset)")
  parser.add_argument("--seeds", default="0", help="comma-separated")
  parser.add_argument("--split", default="val", choices=sorted(SPLIT_DIRS))
  parser.add_argument("--categories", default="", help="comma-separated (default: all)")
  parser.add_argument("--data_root", default="runs/pictures/data", help="the benchmark (built here when missing)")
  parser.add_argument("--runs_dir", default="runs/pictures")
  parser.add_argument("--results_dir", default="runs/pictures/results",
                      help="where records and tables go; experiments/results for the committed tables")
  parser.add_argument("--extra", default="", help="more flags for train and evaluate (quick runs)")
  args = parser.parse_args(argv)

  split_list = lambda text: [t for t in text.replace(",", " ").split() if t]  # noqa: E731
  seeds = [int(s) for s in split_list(args.seeds)]
  categories = split_list(args.categories) or list(pictures_benchmark.CATEGORIES)
  unknown = [c for c in categories if c not in pictures_benchmark.CATEGORIES]
  if unknown:
    parser.error(f"unknown category '{unknown[0]}'; use some of {', '.join(pictures_benchmark.CATEGORIES)}")
  flagfile = args.flagfile or preset_flagfile(args.preset)
  os.chdir(ROOT)
  if flagfile and not os.path.exists(flagfile):
    parser.error(f"{flagfile} does not exist; name a preset with an experiments/pictures_<NAME>.flags")
  preset_flags = [f"--flagfile={flagfile}"] if flagfile else list(DEFAULTS_FLAGS)
  extra = shlex.split(args.extra)
  data_root = os.path.abspath(args.data_root)
  manifest_path = os.path.join(data_root, "manifest.json")
  if not os.path.exists(manifest_path):
    reproduce.note(f"building the benchmark in {data_root}")
    pictures_benchmark.build(data_root)
  with open(manifest_path) as f:
    manifest = json.load(f)
  missing = [c for c in categories if c not in manifest["categories"]]
  if missing:
    parser.error(f"{data_root} has no category '{missing[0]}'; rebuild it with experiments/pictures_benchmark.py")
  data = {"root": args.data_root, "seed": manifest["seed"], "size": manifest["size"]}
  runner_command = "python experiments/pictures.py " + shlex.join(argv if argv is not None else sys.argv[1:])
  cpu = reproduce.cpu_model()

  runs = [(seed, c) for seed in seeds for c in categories]
  record_path = lambda seed, c: os.path.join(  # noqa: E731
      args.results_dir, "runs", f"pictures_{args.preset}", args.split, f"{c}_seed{seed}.json")
  seconds = []
  print(f"pictures: preset {args.preset} ({flagfile or 'defaults'}), split {args.split}, {len(categories)} "
        f"categories x {len(seeds)} seeds = {len(runs)} runs", flush=True)
  for i, (seed, category) in enumerate(runs, start=1):
    record = record_path(seed, category)
    if os.path.exists(record):
      print(f"[{i}/{len(runs)}] {category} seed {seed}: done before", flush=True)
      continue
    began = time.perf_counter()
    reproduce.note(f"run {i} of {len(runs)}: {category} seed {seed}")
    workdir = os.path.join(args.runs_dir, args.preset, f"{category}_seed{seed}")
    os.makedirs(workdir, exist_ok=True)
    log = os.path.join(workdir, "pictures.log")
    common = [*preset_flags, "--dataset=folder", f"--image_size={manifest['size']}", f"--seed={seed}", *extra]
    train_cmd = ["anogan_tf.train", f"--workdir={workdir}", f"--data_dir={os.path.join(data_root, category)}",
                 *common]
    train_record = os.path.join(workdir, "train_record.json")
    if not os.path.exists(train_record):
      wall = reproduce.run_logged(train_cmd, log)
      trained = {"train_wall_seconds": round(wall, 1), "train_seconds": reproduce.history_seconds(workdir),
                 **({"encoder_seconds": reproduce.history_seconds(workdir, "encoder_history.csv")}
                    if os.path.exists(os.path.join(workdir, "encoder_history.csv")) else {}),
                 "train_commit": reproduce.commit(), "train_command": "python -m " + shlex.join(train_cmd)}
      report.write_json(train_record, trained)
    else:
      with open(train_record) as f:
        trained = json.load(f)
    eval_dir = os.path.join(workdir, f"eval_{args.split}")
    eval_data = os.path.join(data_root, category, SPLIT_DIRS[args.split])
    eval_cmd = ["anogan_tf.evaluate", f"--workdir={workdir}", f"--eval_dir={eval_dir}",
                f"--data_dir={eval_data.rstrip(os.sep)}", *common]
    wall = reproduce.run_logged(eval_cmd, log)
    with open(os.path.join(eval_dir, "metrics.json")) as f:
      metrics = json.load(f)
    result = {"preset": args.preset, "flagfile": flagfile, "split": args.split, "category": category, "seed": seed,
              **{m: metrics.get(m) for m in METRICS}, "metrics": metrics, **trained,
              "eval_wall_seconds": round(wall, 1), "eval_commit": reproduce.commit(),
              "eval_command": "python -m " + shlex.join(eval_cmd), "runner_command": runner_command,
              "cpu": cpu, "data": data,
              "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    os.makedirs(os.path.dirname(record), exist_ok=True)
    report.write_json(record, result)
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"[{i}/{len(runs)}] {category} seed {seed}: image AUROC {fmt(result['auroc'])}, pixel AUROC "
          f"{fmt(result['pixel_auroc'])}, AUPRO {fmt(result['pixel_aupro'])} (train {trained['train_seconds']:.0f} s)",
          flush=True)
    write_tables(args.results_dir, args.preset, args.split, categories, seeds)
    seconds.append(time.perf_counter() - began)
    left = sum(not os.path.exists(record_path(*run)) for run in runs[i:])
    reproduce.note(f"run {i} of {len(runs)} done in {seconds[-1]:.0f} s; {reproduce.time_left(seconds, left)}")
  path = write_tables(args.results_dir, args.preset, args.split, categories, seeds)
  if path:
    print(f"table: {path}")
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
