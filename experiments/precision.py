"""float32 against bfloat16 scoring of the same GANs (issue 25's AUROC check), from reproduce's records.

  make reproduce-mnist CLASSES=all SEEDS=0,1,2 PRESETS=seed000,seed000_bf16,best,best_bf16 \\
      RESULTS=experiments/results/precision
  python experiments/precision.py --results_dir=experiments/results/precision --presets=seed000,best

`<preset>_bf16` (experiments/reproduce.py) evaluates the GAN `<preset>` trained, with
--precision=bfloat16, so each (class, seed) pair is one GAN scored twice. With --against=bf16_trained
the pairs are `<preset>` and `<preset>_bf16_trained`, a GAN trained and scored in bfloat16: two GANs
per pair, so a class's difference also holds what two trainings differ by (written to
`precision_<dataset>_trained`). Writes
`<out>.json` / `<out>.md`: per class the AUROC of both and their paired difference, the ten-class
means, and the goals: the bfloat16 mean within the seed spread of float32's and at most 0.5 points
from it, each class within 1 point; beside them the scoring speed of both.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402  (experiments/report.py)

MEAN_POINTS = 0.5  # the goal: ten-class means at most this far apart (AUROC points, x100)
CLASS_POINTS = 1.0  # and each class's


def compare(results_dir: str, dataset: str, preset: str, against: str = "bf16") -> dict:
  """The comparison of `preset` and `preset`_`against` over the (class, seed) runs both have."""
  other = f"{preset}_{against}"
  runs = {p: {(r["class"], r["seed"]): r for r in report.load_records(results_dir, dataset, p)}
          for p in (preset, other)}
  pairs = sorted(set(runs[preset]) & set(runs[other]))
  fp32 = {k: runs[preset][k] for k in pairs}
  bf16 = {k: runs[other][k] for k in pairs}
  classes = sorted({c for c, _ in pairs})
  seeds = sorted({s for _, s in pairs})
  per_class = {}
  for c in classes:
    keys = [k for k in pairs if k[0] == c]
    a = [100 * fp32[k]["auroc"] for k in keys]
    b = [100 * bf16[k]["auroc"] for k in keys]
    per_class[str(c)] = {"seeds": [s for _, s in keys], "float32": a, "bfloat16": b,
                         "difference": float(np.mean(np.subtract(b, a))),
                         "within": bool(abs(np.mean(np.subtract(b, a))) <= CLASS_POINTS)}
  # The ten-class mean per complete seed and its spread: report.summarize's, of each scoring's records
  summaries = {name: report.summarize(list(runs_.values())) for name, runs_ in (("float32", fp32), ("bfloat16", bf16))}
  complete = sorted(int(s) for s in summaries["float32"]["mean_auroc_per_seed"])
  seed_means = {name: [100 * v for v in summary["mean_auroc_per_seed"].values()] for name, summary in summaries.items()}
  mean = {name: float(np.mean(v)) if v else None for name, v in seed_means.items()}
  std = summaries["float32"]["mean_auroc_std_over_seeds"]
  spread = None if std is None else 100 * std
  gap = None if mean["float32"] is None else mean["bfloat16"] - mean["float32"]
  speed = {name: float(np.mean([r["images_per_second"] for r in runs_.values()])) if runs_ else None
           for name, runs_ in (("float32", fp32), ("bfloat16", bf16))}
  return {
      "dataset": dataset, "preset": preset, "against": other, "classes": classes, "seeds": seeds, "complete_seeds": complete,
      "per_class": per_class, "mean": mean, "mean_per_seed": seed_means, "float32_spread": spread,
      "mean_difference": gap,
      "mean_within": None if gap is None else bool(abs(gap) <= MEAN_POINTS and (spread is None or abs(gap) <= spread)),
      "every_class_within": all(e["within"] for e in per_class.values()) if per_class else None,
      "images_per_second": speed,
      "commits": sorted({r.get("eval_commit", "?") for r in [*fp32.values(), *bf16.values()]}),
      "eval_commands": sorted({r["eval_command"] for r in bf16.values()})[:1],
  }


# --against: (the output's suffix, its heading, what its pairs are)
AGAINST = {
    "bf16": ("", "AUROC scored in float32 and in bfloat16, the same GANs",
             "Each GAN trained once in float32 (experiments/reproduce.py), evaluated twice: as its preset, and with "
             "--precision=bfloat16 (`<preset>_bf16`)."),
    "bf16_trained": ("_trained", "AUROC of GANs trained and scored in float32 and in bfloat16",
                     "Each (class, seed) trained twice (experiments/reproduce.py): as its preset in float32, and with "
                     "--precision=bfloat16 for training and scoring (`<preset>_bf16_trained`): two GANs, so a class's "
                     "difference also holds what two trainings of one seed differ by."),
}


def markdown(comparisons: list, dataset: str, command: str, against: str = "bf16") -> str:
  _, heading, pairs = AGAINST[against]
  lines = [f"# {dataset}: {heading}", "",
           f"{pairs} AUROC x100; difference = bfloat16 - float32, mean over the "
           f"seeds. Goals: the ten-class means at most {MEAN_POINTS} points apart and within float32's spread over "
           f"seeds; each class within {CLASS_POINTS} point.", ""]
  yes = {True: "yes", False: "**no**", None: "n/a"}
  for comp in comparisons:
    classes = comp["classes"]
    lines += [f"## preset `{comp['preset']}`, seeds {', '.join(map(str, comp['seeds']))}", "",
              "| | " + " | ".join(map(str, classes)) + " | mean |",
              "| --- | " + " | ".join("---" for _ in classes) + " | --- |"]
    for name in ("float32", "bfloat16"):
      cells = [f"{np.mean(comp['per_class'][str(c)][name]):.2f}" for c in classes]
      mean = "" if comp["mean"][name] is None else f"{comp['mean'][name]:.2f}"
      lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
    cells = [f"{comp['per_class'][str(c)]['difference']:+.2f}" for c in classes]
    gap = "" if comp["mean_difference"] is None else f"{comp['mean_difference']:+.2f}"
    lines.append("| difference | " + " | ".join(cells) + f" | {gap} |")
    spread = "n/a (one seed)" if comp["float32_spread"] is None else f"{comp['float32_spread']:.2f}"
    speed = comp["images_per_second"]
    lines += ["", f"- float32's spread of the ten-class mean over seeds: {spread}; mean within the goal: "
              f"{yes[comp['mean_within']]}; every class within {CLASS_POINTS} point: "
              f"{yes[comp['every_class_within']]}.",
              f"- Scoring speed, mean over runs (images/s): float32 {speed['float32']:.1f}, bfloat16 "
              f"{speed['bfloat16']:.1f} (each run's own, on a shared machine).",
              f"- Commits: {', '.join(comp['commits'])}. A bfloat16 evaluation: `{comp['eval_commands'][0]}`", ""]
  lines += [f"Produce the records (resumes), then this table: `{command}`", ""]
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results_dir", default="experiments/results/precision")
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--presets", default="seed000,best")
  parser.add_argument("--against", default="bf16", choices=tuple(AGAINST),
                      help="bf16: the same GANs scored in bfloat16; bf16_trained: GANs trained in bfloat16")
  parser.add_argument("--out", default="", help="default: <results_dir>/../precision_<dataset>")
  args = parser.parse_args(argv)
  comparisons = [compare(args.results_dir, args.dataset, p, args.against) for p in args.presets.split(",") if p]
  comparisons = [c for c in comparisons if c["classes"]]
  target = "reproduce-fashion" if args.dataset == "fashion_mnist" else "reproduce-mnist"
  if not comparisons:
    wanted = ",".join(f"{p},{p}_{args.against}" for p in args.presets.split(",") if p)
    print(f"no pairs of <preset> and <preset>_{args.against} records for {args.dataset} in {args.results_dir}/runs/; "
          f"run make {target} PRESETS={wanted} RESULTS={args.results_dir} first", file=sys.stderr)
    return 1
  name = f"precision_{args.dataset}{AGAINST[args.against][0]}"
  out = args.out or os.path.join(os.path.dirname(os.path.normpath(args.results_dir)), name)
  presets = ",".join(f"{c['preset']},{c['against']}" for c in comparisons)
  classes = ",".join(sorted({str(k) for c in comparisons for k in c["classes"]}, key=int))
  seeds = ",".join(sorted({str(s) for c in comparisons for s in c["seeds"]}, key=int))
  command = (f"make {target} CLASSES={classes} SEEDS={seeds} PRESETS={presets} RESULTS={args.results_dir}; "
             f"python experiments/precision.py --results_dir={args.results_dir} --dataset={args.dataset} "
             f"--presets={args.presets}" + ("" if args.against == "bf16" else f" --against={args.against}"))
  report.write_json_and_md(out, {"comparisons": comparisons, "command": command},
                           markdown(comparisons, args.dataset, command, args.against))
  print(out + ".md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
