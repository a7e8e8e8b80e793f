"""The picture benchmark's scoring settings, chosen on the validation split: a preset's trained workdirs
evaluated again with each image-score setting (evaluate-time flags: no retraining), tabulated.

  python experiments/pictures_scoring.py --preset=draem --seeds=0,1,2 --windows=1,3,5 --shifts=0,2 \
      [--tops=0,0.01] --data_root=/tmp/pb --runs_dir=runs/pictures --results_dir=experiments/results

After experiments/pictures.py --preset=NAME --split=val has trained `RUNS_DIR/NAME/<category>_seed<s>`
(a workdir without its train_record.json is left out, as one still training), each workdir is
evaluated on its validation pictures once per setting: `--draem_score_window=W --draem_score_shifts=S
--draem_score_top=T` into `<workdir>/eval_val_w<W>_s<S>[_t<T>]/` (no `_t` part at T = 0; not redone
when its metrics.json exists, so a rerun resumes). Validation pictures only: settings are chosen
there, and the test split is run once with the chosen one. Writes
RESULTS_DIR/pictures_<NAME>_<TABLE>_val.json/.md (--table, default `scoring`): per setting, image
AUROC, pixel AUROC and AUPRO per category (mean over the seeds done) and their mean over categories,
and the image AUROC mean over categories per seed (does a setting win on every seed?).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import pictures  # noqa: E402
import pictures_benchmark  # noqa: E402
import report  # noqa: E402
import reproduce  # noqa: E402

METRICS = pictures.METRICS  # image AUROC, pixel AUROC, AUPRO


def setting_name(window: int, shifts: int, top: float = 0.0) -> str:
  return f"w{window}_s{shifts}" + (f"_t{top:g}" if top else "")


def evaluate_once(workdir: str, flagfile: str, data_dir: str, size: int, seed: int, window: int, shifts: int,
                  top: float = 0.0) -> dict:
  """metrics.json of the workdir's validation pictures scored with this setting (evaluated when missing)."""
  eval_dir = os.path.join(workdir, f"eval_val_{setting_name(window, shifts, top)}")
  metrics_path = os.path.join(eval_dir, "metrics.json")
  if not os.path.exists(metrics_path):
    command = ["anogan_tf.evaluate", f"--workdir={workdir}", f"--eval_dir={eval_dir}", f"--data_dir={data_dir}",
               f"--flagfile={flagfile}", "--dataset=folder", f"--image_size={size}", f"--seed={seed}",
               f"--draem_score_window={window}", f"--draem_score_shifts={shifts}", f"--draem_score_top={top:g}"]
    reproduce.run_logged(command, os.path.join(workdir, "pictures_scoring.log"))
  with open(metrics_path) as f:
    return json.load(f)


def tabulate(results: dict, categories, seeds, settings) -> dict:
  """{setting: {"per_category": {category: {metric: mean over seeds}}, "mean": {metric: mean over
  categories}, "image_auroc_per_seed": {seed: mean over categories}}}; `results[(setting, category,
  seed)]` are metrics.json contents."""
  out = {}
  for setting in settings:
    per_category = {}
    for category in categories:
      runs = [results[(setting, category, s)] for s in seeds if (setting, category, s) in results]
      if runs:
        per_category[category] = {m: statistics.fmean(r[m] for r in runs) for m in METRICS}
    per_seed = {}
    for seed in seeds:
      values = [results[(setting, c, seed)]["auroc"] for c in categories if (setting, c, seed) in results]
      if len(values) == len(categories):
        per_seed[str(seed)] = statistics.fmean(values)
    mean = {m: statistics.fmean(v[m] for v in per_category.values()) for m in METRICS} if per_category else {}
    out[setting] = {"per_category": per_category, "mean": mean, "image_auroc_per_seed": per_seed}
  return out


def write(results_dir: str, preset: str, table: dict, header: dict, name: str = "scoring") -> str:
  os.makedirs(results_dir, exist_ok=True)
  stem = os.path.join(results_dir, f"pictures_{preset}_{name}_val")
  categories = header["categories"]
  lines = [f"# Picture benchmark, preset `{preset}`: image-score settings on the validation split", "",
           f"Each trained workdir of `pictures_{preset}_val` evaluated again on its validation pictures with "
           "`--draem_score_window=W` (the max of the anomaly map mean-filtered over W x W) and "
           "`--draem_score_shifts=S` (the map averaged over the picture and four copies shifted by S pixels "
           "diagonally; 0: the picture alone); a `_tT` suffix: `--draem_score_top=T` (the image score is the mean "
           "of the map's highest T share of pixels, not its max). x 100, mean over the seeds done "
           f"({header['runs']} workdirs: {header['workdirs_note']}).", "",
           f"Command: `{header['command']}`  ", f"Commit: {header['commit']}; CPU: {header['cpu']}", ""]
  for metric, title in zip(METRICS, ("Image AUROC", "Pixel AUROC", "AUPRO")):
    lines += [f"{title}:", "", "| setting | " + " | ".join(categories) + " | mean |"
              + (" per seed |" if metric == "auroc" else ""),
              "| --- | " + " | ".join("---" for _ in categories) + " | --- |" + (" --- |" if metric == "auroc" else "")]
    for setting, entry in table.items():
      cells = [f"{100 * entry['per_category'][c][metric]:.1f}" if c in entry["per_category"] else "-"
               for c in categories]
      mean = f"{100 * entry['mean'][metric]:.1f}" if entry["mean"] else "-"
      per_seed = ", ".join(f"{s}: {100 * v:.1f}" for s, v in entry["image_auroc_per_seed"].items())
      lines.append(f"| {setting} | " + " | ".join(cells) + f" | {mean} |" + (f" {per_seed} |" if metric == "auroc" else ""))
    lines.append("")
  report.write_json_and_md(stem, {**header, "settings": table}, "\n".join(lines))
  return stem + ".md"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="draem", help="NAME of experiments/pictures_NAME.flags, trained by pictures.py")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--categories", default="", help="comma-separated (default: all)")
  parser.add_argument("--windows", default="1,3,5", help="--draem_score_window values")
  parser.add_argument("--shifts", default="0,2", help="--draem_score_shifts values")
  parser.add_argument("--tops", default="0", help="--draem_score_top values (0: the max)")
  parser.add_argument("--table", default="scoring", help="the table's name: RESULTS_DIR/pictures_<preset>_<table>_val.md")
  parser.add_argument("--data_root", default="runs/pictures/data")
  parser.add_argument("--runs_dir", default="runs/pictures")
  parser.add_argument("--results_dir", default="runs/pictures/results")
  args = parser.parse_args(argv)
  numbers = lambda text, kind=int: [kind(t) for t in text.replace(",", " ").split()]  # noqa: E731
  seeds, windows, shifts = numbers(args.seeds), numbers(args.windows), numbers(args.shifts)
  tops = numbers(args.tops, float)
  categories = [c for c in args.categories.replace(",", " ").split() if c] or list(pictures_benchmark.CATEGORIES)
  flagfile = pictures.preset_flagfile(args.preset)
  os.chdir(ROOT)
  if not flagfile or not os.path.exists(flagfile):
    parser.error(f"no flagfile for preset '{args.preset}'; name one with an experiments/pictures_<NAME>.flags")
  manifest = os.path.join(args.data_root, "manifest.json")
  if not os.path.exists(manifest):
    parser.error(f"{args.data_root} holds no picture benchmark (manifest.json); name the --data_root that "
                 "experiments/pictures.py trained from")
  with open(manifest) as f:
    size = json.load(f)["size"]
  settings = list(itertools.product(windows, shifts, tops))
  results, done = {}, []
  for seed, category in itertools.product(seeds, categories):
    workdir = os.path.join(args.runs_dir, args.preset, f"{category}_seed{seed}")
    if not os.path.exists(os.path.join(workdir, "train_record.json")):
      continue
    done.append(f"{category} {seed}")
    data_dir = os.path.join(os.path.abspath(args.data_root), category, "validation")
    for window, shift, top in settings:
      metrics = evaluate_once(workdir, flagfile, data_dir, size, seed, window, shift, top)
      results[(setting_name(window, shift, top), category, seed)] = metrics
      print(f"{category} seed {seed} {setting_name(window, shift, top)}: image AUROC {metrics['auroc']:.4f}, "
            f"pixel AUROC {metrics['pixel_auroc']:.4f}", flush=True)
  if not results:
    parser.error(f"no trained workdir under {args.runs_dir}/{args.preset}; run experiments/pictures.py first")
  table = tabulate(results, categories, seeds, [setting_name(*setting) for setting in settings])
  header = {"preset": args.preset, "categories": categories, "seeds": seeds, "runs": len(done),
            "workdirs_note": ", ".join(done), "commit": reproduce.commit(), "cpu": reproduce.cpu_model(),
            "command": "python experiments/pictures_scoring.py " + shlex.join(argv if argv is not None else sys.argv[1:])}
  print(f"table: {write(args.results_dir, args.preset, table, header, args.table)}")
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
