"""Builds `<results_dir>/<dataset>_<preset>.json`, `.md` and `.png` from the per-run records.

  python experiments/report.py --results_dir=experiments/results --dataset=mnist --preset=seed000

The records are `<results_dir>/runs/<dataset>_<preset>/class<c>_seed<s>.json`, written by
`experiments/reproduce.py`; this script only reads them, so the tables regenerate identically.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

import numpy as np

# Published AUROC (%) per class 0-9 on the same one-class protocol (train on class c, whole test
# split, anomalies = every other class), as quoted in the reproduction issue.
PUBLISHED = {
    "mnist": [
        ("AnoGAN (Cheng et al. 2020 / AGAD Table 1)", [99.0, 99.8, 88.8, 91.3, 94.4, 91.2, 92.5, 96.4, 88.3, 95.8]),
        ("AnoGAN (Ruff et al. 2018, recalled, unchecked)", [96.6, 99.2, 85.0, 88.7, 89.4, 88.3, 94.7, 93.5, 84.9, 92.4]),
        ("DCAE (Ruff et al. 2018, recalled, unchecked)", [97.6, 98.3, 85.4, 86.7, 86.5, 78.2, 94.6, 92.3, 86.5, 90.4]),
        ("One-class Deep SVDD (Ruff et al. 2018)", [98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5]),
        ("OCGAN (Perera et al. 2019)", [99.8, 99.9, 94.2, 96.3, 97.5, 98.0, 99.1, 98.1, 93.9, 98.1]),
    ],
    "fashion_mnist": [
        ("GEOM (Golan & El-Yaniv 2018)", [99.4, 97.6, 91.1, 89.9, 92.1, 93.4, 83.3, 98.9, 90.8, 99.2]),
    ],
}
PUBLISHED_MEANS_ONLY = {"fashion_mnist": [("ADGAN (Golan & El-Yaniv 2018's GAN baseline)", 88.4)]}
PER_RUN = ("auroc", "auprc", "auprc_normal", "train_seconds", "seconds", "images_per_second")
BY_CLASS = "auroc_by_anomalous_class"  # {anomalous class: AUROC of the normals against it alone}


def _class_order(name: str):
  return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def load_records(results_dir: str, dataset: str, preset: str) -> list:
  records = []
  for path in sorted(glob.glob(os.path.join(results_dir, "runs", f"{dataset}_{preset}", "class*_seed*.json"))):
    with open(path) as f:
      records.append(json.load(f))
  return records


def summarize(records: list) -> dict:
  """The results file: per class, one value per seed of each measure, and their mean and std."""
  classes = sorted({r["class"] for r in records})
  seeds = sorted({r["seed"] for r in records})
  per_class = {}
  for c in classes:
    rows = sorted((r for r in records if r["class"] == c), key=lambda r: r["seed"])
    entry = {"seeds": [r["seed"] for r in rows]}
    for key in PER_RUN:
      entry[key] = [r[key] for r in rows]
    entry["auroc_mean"] = float(np.mean(entry["auroc"]))
    entry["auroc_std"] = float(np.std(entry["auroc"], ddof=1)) if len(rows) > 1 else None
    by_class = [r for r in rows if BY_CLASS in r]  # records from before evaluate gave it have none
    if by_class:
      entry["by_anomalous_class_seeds"] = [r["seed"] for r in by_class]
      names = sorted({a for r in by_class for a in r[BY_CLASS]}, key=_class_order)
      entry[BY_CLASS] = {a: float(np.mean([r[BY_CLASS][a] for r in by_class if a in r[BY_CLASS]])) for a in names}
    per_class[str(c)] = entry
  class_means = [per_class[str(c)]["auroc_mean"] for c in classes]
  # Spread of the 10-class mean across seeds (only seeds that covered every class).
  complete = [s for s in seeds if all(s in per_class[str(c)]["seeds"] for c in classes)]
  seed_means = [float(np.mean([per_class[str(c)]["auroc"][per_class[str(c)]["seeds"].index(s)] for c in classes]))
                for s in complete]
  first = records[0] if records else {}
  return {
      "dataset": first.get("dataset"), "preset": first.get("preset"),
      "mean_auroc": float(np.mean(class_means)) if classes else None,
      "mean_auroc_per_seed": dict(zip(map(str, complete), seed_means)),
      "mean_auroc_std_over_seeds": float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else None,
      "mean_auprc": float(np.mean([np.mean(per_class[str(c)]["auprc"]) for c in classes])) if classes else None,
      "mean_auprc_normal": float(np.mean([np.mean(per_class[str(c)]["auprc_normal"]) for c in classes])) if classes else None,
      "seeds": seeds, "classes": classes, "n_runs": len(records),
      "per_class": per_class,
      "settings": {k: first.get(k) for k in ("lam", "map_steps", "map_lrs", "map_reduction", "feature_layer",
                                             "z_init", "z_init_std")},
      "commits": sorted({r.get("train_commit", "?") for r in records} | {r.get("eval_commit", "?") for r in records}),
      "commands": sorted({r["train_command"] for r in records} | {r["eval_command"] for r in records})[:4],
      "total_wall_seconds": round(sum(r.get("train_wall_seconds", 0) + r.get("eval_wall_seconds", 0) for r in records), 1),
  }


def _pct(value):
  return "" if value is None else f"{100 * value:.1f}"


def _with_std(mean, std):
  """A table cell: the mean in %, "± std" beside it when there is one (2+ seeds)."""
  return _pct(mean) + (f" ± {_pct(std)}" if std is not None else "")


def markdown(summary: dict, dataset: str, preset: str, command: str) -> str:
  classes = summary["classes"]
  pc = summary["per_class"]
  lines = [f"# {dataset}, preset `{preset}`: one-class AUROC (%)", "",
           f"Train on the train-split images of one class, score the whole test split (anomalies = every "
           f"other class). Seeds {', '.join(map(str, summary['seeds']))}; {summary['n_runs']} runs; "
           f"ours: mean ± std over seeds (std needs 2+ seeds).", "",
           "| | " + " | ".join(str(c) for c in classes) + " | mean |",
           "| --- | " + " | ".join("---" for _ in classes) + " | --- |"]
  ours = [_with_std(pc[str(c)]["auroc_mean"], pc[str(c)]["auroc_std"]) for c in classes]
  mean = _with_std(summary["mean_auroc"], summary["mean_auroc_std_over_seeds"])
  lines.append(f"| **ours ({preset})** | " + " | ".join(ours) + f" | **{mean}** |")
  for name, values in PUBLISHED.get(dataset, []):
    row = [f"{values[c]:.1f}" for c in classes]
    lines.append(f"| {name} | " + " | ".join(row) + f" | {np.mean([values[c] for c in classes]):.1f} |")
  for name, value in PUBLISHED_MEANS_ONLY.get(dataset, []):
    lines.append(f"| {name} | " + " | ".join("" for _ in classes) + f" | {value:.1f} |")
  lines += ["", "Per class, over seeds (AUPRC with anomalies as positive has a chance level of about 0.9 "
            "here; with normals as positive, about 0.1):", "",
            "| class | seeds | AUROC | AUPRC (anomaly +) | AUPRC (normal +) | train s | score s | images/s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for c in classes:
    e = pc[str(c)]
    fmt = lambda key, spec: " / ".join(format(v, spec) for v in e[key])  # noqa: E731
    lines.append(f"| {c} | {', '.join(map(str, e['seeds']))} | {fmt('auroc', '.4f')} | {fmt('auprc', '.4f')} | "
                 f"{fmt('auprc_normal', '.4f')} | {fmt('train_seconds', '.0f')} | {fmt('seconds', '.0f')} | "
                 f"{fmt('images_per_second', '.1f')} |")
  lines += by_class_table(summary)
  lines += ["", f"Mean AUPRC: {summary['mean_auprc']:.4f} (anomalies positive), "
            f"{summary['mean_auprc_normal']:.4f} (normals positive).",
            f"Mapping settings: {json.dumps(summary['settings'])}.",
            f"Commits: {', '.join(summary['commits'])}. Total wall time of the runs: "
            f"{summary['total_wall_seconds'] / 3600:.2f} h (2-core CPU).", "",
            f"Regenerate this table from the records: `python experiments/report.py --dataset={dataset} "
            f"--preset={preset} --results_dir=experiments/results`. Produce the records (resumes): `{command}`.",
            "One run's exact commands (the records hold each run's own):", ""]
  lines += [f"    {c}" for c in summary["commands"][:2]]
  return "\n".join(lines) + "\n"


def by_class_table(summary: dict) -> list:
  """Markdown lines: per normal class (rows), the AUROC against each anomalous class alone
  (columns), mean over the seeds whose records hold it; below 50 the score ranks that class as
  more normal than the normal class itself. Empty when no record holds it."""
  pc = summary["per_class"]
  rows = [c for c in summary["classes"] if BY_CLASS in pc[str(c)]]
  if not rows:
    return []
  anomalies = sorted({a for c in rows for a in pc[str(c)][BY_CLASS]}, key=_class_order)
  lines = ["", "AUROC (%) of each normal class (rows) against each anomalous class alone (columns), mean over "
           "the seeds listed; below 50 the score ranks that class as more normal than the normal class itself:", "",
           "| normal \\ anomaly | seeds | " + " | ".join(anomalies) + " | lowest |",
           "| --- | --- | " + " | ".join("---" for _ in anomalies) + " | --- |"]
  for c in rows:
    e = pc[str(c)]
    values = e[BY_CLASS]
    lowest = min(values, key=values.get)
    cells = [_pct(values[a]) if a in values else "" for a in anomalies]
    lines.append(f"| {c} | {', '.join(map(str, e['by_anomalous_class_seeds']))} | " + " | ".join(cells) +
                 f" | {lowest} ({_pct(values[lowest])}) |")
  return lines


def _seeds_label(seeds_by_class: dict) -> str:
  """"seeds 0,1" when every class has the same seeds, else the seeds every class has and where
  the others are: "seeds 0,1; seed 2 on classes 0,3" (a series still running)."""
  everywhere = sorted(set.intersection(*(set(v) for v in seeds_by_class.values())))
  parts = ["seeds " + ",".join(map(str, everywhere))] if everywhere else []
  for seed in sorted({x for v in seeds_by_class.values() for x in v} - set(everywhere)):
    holding = [str(c) for c, v in seeds_by_class.items() if seed in v]
    parts.append(f"seed {seed} on class{'es' if len(holding) > 1 else ''} {','.join(holding)}")
  return "; ".join(parts)


def combined_table(results_dir: str, dataset: str, presets) -> str:
  """One markdown table: each preset's per-class AUROC (mean ± std over seeds) and the published
  rows, on the classes every preset has records for; the means are over those classes (± the std
  over seeds of a seed's mean over them, for a preset whose seeds covered those classes only)."""
  summaries = {p: summarize(load_records(results_dir, dataset, p)) for p in presets}
  summaries = {p: s for p, s in summaries.items() if s["classes"]}
  classes = sorted(set.intersection(*(set(s["classes"]) for s in summaries.values()))) if summaries else []
  lines = ["| AUROC (%) | " + " | ".join(str(c) for c in classes) + " | mean |",
           "| --- | " + " | ".join("---" for _ in classes) + " | --- |"]
  for p, s in summaries.items():
    pc = s["per_class"]
    cells = [_with_std(pc[str(c)]["auroc_mean"], pc[str(c)]["auroc_std"]) for c in classes]
    label = _seeds_label({c: pc[str(c)]["seeds"] for c in classes})
    # The spread is of the mean over all its classes: only when those are the table's.
    mean = _with_std(np.mean([pc[str(c)]["auroc_mean"] for c in classes]),
                     s["mean_auroc_std_over_seeds"] if s["classes"] == classes else None)
    lines.append(f"| **ours, {p}** ({label}) | " + " | ".join(cells) + f" | **{mean}** |")
  for name, values in PUBLISHED.get(dataset, []):
    lines.append(f"| {name} | " + " | ".join(f"{values[c]:.1f}" for c in classes) +
                 f" | {np.mean([values[c] for c in classes]):.1f} |")
  return "\n".join(lines) + "\n"


def figure(summary: dict, dataset: str, preset: str, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from anogan_tf.utils.files import save_figure
  classes = summary["classes"]
  pc = summary["per_class"]
  rows = PUBLISHED.get(dataset, [])
  width = 0.8 / (1 + len(rows))
  fig, ax = plt.subplots(figsize=(11, 4.5))
  x = np.arange(len(classes))
  means = [100 * pc[str(c)]["auroc_mean"] for c in classes]
  errs = [100 * (pc[str(c)]["auroc_std"] or 0.0) for c in classes]
  ax.bar(x, means, width, yerr=errs, capsize=3, label=f"ours ({preset}), mean ± std over seeds", color="k")
  for j, (name, values) in enumerate(rows, start=1):
    ax.bar(x + j * width, [values[c] for c in classes], width, label=name, alpha=0.75)
  ax.set_xticks(x + width * len(rows) / 2, [str(c) for c in classes])
  ax.set_xlabel("normal class")
  ax.set_ylabel("AUROC (%)")
  low = min(means + [v for _, values in rows for v in values]) - 5
  ax.set_ylim(max(0, low), 100.5)
  ax.set_title(f"{dataset}, one-class AUROC per class")
  ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
  save_figure(fig, path)


def write_json(path: str, record) -> None:
  """`record` as indented JSON into `path`, written whole or not at all (anogan_tf.utils.files.write_text)."""
  from anogan_tf.utils.files import write_text
  write_text(path, json.dumps(record, indent=2) + "\n")


def write_json_and_md(base: str, summary: dict, text: str) -> None:
  """<base>.json (the summary) and <base>.md (its table), each written whole or not at all.

  Notes written by hand live in <base>.notes.md beside them: the .md ends with them, so that
  regenerating a table from its records keeps them.
  """
  from anogan_tf.utils.files import write_text
  write_json(base + ".json", summary)
  notes_path = base + ".notes.md"
  if os.path.exists(notes_path):
    with open(notes_path) as f:
      notes = f.read().strip()
    if notes:
      text = text.rstrip("\n") + "\n\n" + notes + "\n"
  write_text(base + ".md", text)


def write_tables(results_dir: str, dataset: str, preset: str):
  """Writes <dataset>_<preset>.json, .md and .png from the records; returns the .md path (None if none)."""
  records = load_records(results_dir, dataset, preset)
  if not records:
    return None
  summary = summarize(records)
  classes = ",".join(map(str, summary["classes"]))
  seeds = ",".join(map(str, summary["seeds"]))
  target = "reproduce-fashion" if dataset == "fashion_mnist" else "reproduce-mnist"
  command = (f"make {target} PRESETS={preset} CLASSES={classes} SEEDS={seeds} "
             f"RESULTS={results_dir}")
  summary["command"] = command
  base = os.path.join(results_dir, f"{dataset}_{preset}")
  write_json_and_md(base, summary, markdown(summary, dataset, preset, command))
  figure(summary, dataset, preset, base + ".png")
  return base + ".md"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results_dir", default="experiments/results")
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--preset", default=None, help="default: every preset with records")
  parser.add_argument("--combined", default="", help="comma-separated presets: print one table of them (the README's)")
  args = parser.parse_args(argv)
  if args.combined:
    print(combined_table(args.results_dir, args.dataset, [p for p in args.combined.split(",") if p]), end="")
    return 0
  presets = [args.preset] if args.preset else sorted(
      re.sub(f"^{args.dataset}_", "", os.path.basename(p))
      for p in glob.glob(os.path.join(args.results_dir, "runs", f"{args.dataset}_*")))
  for preset in presets:
    path = write_tables(args.results_dir, args.dataset, preset)
    print(path or f"no records for {args.dataset} {preset} in {args.results_dir}/runs/")
  return 0


if __name__ == "__main__":
  sys.exit(main())
