"""Choosing `best.flags` without the test split: candidates scored on the validation split.

  python experiments/tune.py --dataset=mnist --classes=2,3,5,8 --seeds=0 --results_dir=experiments/results

Every candidate is seed 000's GAN (experiments/mnist.flags) trained with --val_fraction=0.1 (a
tenth of the normal training images held out, seeded) and the warm-start encoder, scored with
--eval_split=val: the held-out normals against as many train-split images of the other classes.
The test split is never loaded. Candidates differ in scoring settings only, so they share one
GAN per (class, seed): the runs are experiments/reproduce.py's (resumable, one record per
candidate, class and seed, under <results_dir>/tuning/runs/). Writes
<results_dir>/tuning/tuning_<dataset>.json and .md: per candidate, validation AUROC per class, the
mean, and scoring speed. Progress on stderr as reproduce.py shows it. The other families, other
GANs under best's scoring and ensembles of candidates (experiments/ensemble.py: each member's
score normalised by the held-out normals of its own validation evaluation) are candidates too.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import report  # noqa: E402
import reproduce  # noqa: E402

VAL_FRACTION = 0.1
TRAIN = [f"--val_fraction={VAL_FRACTION}", f"--encoder_epochs={reproduce.WARM_ENCODER_EPOCHS}"]
# AnoGAN candidates: name -> (what it changes, evaluate flags), all on the same GANs (seed 000's,
# trained with TRAIN); seed 000's mapping unless named.
CANDIDATES = {
    "seed000": ("seed 000's mapping: lam 0.7, f = act1, 50 + 100 Adam steps, per-image means", []),
    "lam0.1": ("lam 0.1 (the paper's weight), means", ["--lam=0.1"]),
    "lam0.3": ("lam 0.3", ["--lam=0.3"]),
    "lam1.0": ("lam 1: the discrimination loss only", ["--lam=1.0"]),
    "act2": ("f = D's second block (act2) instead of act1", ["--feature_layer=act2"]),
    "steps2x": ("twice the search: 100 + 200 steps", ["--map_steps=100,200"]),
    "paper": ("the paper's mapping: lam 0.1, sums, 50 + 450 steps", ["--lam=0.1", "--map_reduction=sum",
                                                                     "--map_steps=50,450"]),
    "restarts3": ("the best of 3 searches from independent random z per image", ["--map_restarts=3"]),
    "warm0": ("z = E(x), no search", ["--initial_z=encoder", "--map_steps=0"]),
    "warm50": ("from E(x), 50 steps at 1e-2", ["--initial_z=encoder", "--map_steps=50"]),
    "warm_full": ("from E(x), seed 000's 50 + 100 steps", ["--initial_z=encoder"]),
    "warm10": ("from E(x), 10 steps at 1e-2", ["--initial_z=encoder", "--map_steps=10"]),
    "warm0_lam0": ("z = E(x), no search, lam 0 (residual only)", ["--initial_z=encoder", "--map_steps=0", "--lam=0.0"]),
    "warm0_lam0.1": ("z = E(x), no search, lam 0.1", ["--initial_z=encoder", "--map_steps=0", "--lam=0.1"]),
    "warm0_lam0.3": ("z = E(x), no search, lam 0.3", ["--initial_z=encoder", "--map_steps=0", "--lam=0.3"]),
    "warm0_lam1.0": ("z = E(x), no search, lam 1 (features only)", ["--initial_z=encoder", "--map_steps=0", "--lam=1.0"]),
    "warm0_act2": ("z = E(x), no search, f = act2", ["--initial_z=encoder", "--map_steps=0", "--feature_layer=act2"]),
    "warm0_lam0_ink0.5": ("z = E(x), no search, lam 0, score / ink^0.5",
                          ["--initial_z=encoder", "--map_steps=0", "--lam=0.0", "--ink_power=0.5"]),
    "warm0_lam0_ink1": ("z = E(x), no search, lam 0, score / ink",
                        ["--initial_z=encoder", "--map_steps=0", "--lam=0.0", "--ink_power=1.0"]),
    "seed000_ink0.5": ("seed 000's mapping, score / ink^0.5", ["--ink_power=0.5"]),
    "warm0_lam0.1_ink0.5": ("z = E(x), no search, lam 0.1, score / ink^0.5",
                            ["--initial_z=encoder", "--map_steps=0", "--lam=0.1", "--ink_power=0.5"]),
    "warm10_lam0_ink0.5": ("from E(x), 10 steps on the residual, score / ink^0.5",
                           ["--initial_z=encoder", "--map_steps=10", "--lam=0.0", "--ink_power=0.5"]),
}
# The other families at seed 000's size (their own trainings, with the same held-out normals):
# name -> (what it is, flagfile).
FAMILY_CANDIDATES = {
    "egbad": ("Efficient GAN, one pass (egbad.flags)", "experiments/egbad.flags"),
    "ae": ("autoencoder, summed squared reconstruction error (ae.flags)", "experiments/ae.flags"),
    "vae": ("VAE, reconstruction of the mean (vae.flags)", "experiments/vae.flags"),
}


# Other GANs, each trained like seed 000's (TRAIN: held-out normals, the warm-start encoder) and
# scored as best.flags scores (z = E(x), residual only, over the ink): name -> (what it is, flagfile, train flags).
BEST_SCORING = ["--initial_z=encoder", "--map_steps=0", "--lam=0.0", "--ink_power=0.5"]


def schedule(epochs: int) -> list:
  """Seed 000's schedule stretched to `epochs`: the decay a quarter before the end (150 of 200)."""
  return [f"--epochs={epochs}", f"--lr_decay_epoch={epochs * 3 // 4}"]


GAN_CANDIDATES = {
    "wide_best": ("seed 000's GAN 4x wider (G 128-channel Dense, 64, 32; D 64, 128)",
                        "experiments/mnist.flags", ["--g_dense_channels=128", "--g_filters=64,32", "--d_filters=64,128"]),
    "long_best": ("seed 000's GAN trained twice as long (400 epochs, decay at 300)",
                        "experiments/mnist.flags", schedule(400)),
    "longer_best": ("seed 000's GAN trained three times as long (600 epochs, decay at 450)",
                    "experiments/mnist.flags", schedule(600)),
    "longest_best": ("seed 000's GAN trained four times as long (800 epochs, decay at 600)",
                     "experiments/mnist.flags", schedule(800)),
    "long_ema_best": ("long_best's GAN exporting the moving average of its weights over the last phase "
                      "(--ema_momentum=0.999: about 1,000 steps, 13 epochs of 76 batches)", "experiments/mnist.flags",
                      [*schedule(400), "--ema_momentum=0.999"]),
    "seed001_best": ("seed 001's GAN (seed001.flags)", "experiments/seed001.flags", []),
    "seed002_best": ("seed 002's GAN (seed002.flags)", "experiments/seed002.flags", []),
    "second_best": ("seed 000's GAN again from other initial weights and draws (--init_seed_offset=1000), the "
                    "same images", "experiments/mnist.flags", reproduce.SECOND_SEED),
    "second_long_best": ("long_best's GAN again from other initial weights and draws (--init_seed_offset=1000), "
                         "the same images", "experiments/mnist.flags",
                         [*schedule(400), *reproduce.SECOND_SEED]),
}
# Ensembles (experiments/ensemble.py): the mean of the members' scores, each in units of its spread on
# the held-out normals (the normals of its own --eval_split=val evaluation): name -> (what it is, members).
ENSEMBLE_CANDIDATES = {
    "ens_best_vae": ("best's score (warm0_lam0_ink0.5) and vae's, each normalised by the held-out normals",
                     ("warm0_lam0_ink0.5", "vae")),
    "ens_best_vae_ae": ("best's, vae's and ae's scores, each normalised by the held-out normals",
                        ("warm0_lam0_ink0.5", "vae", "ae")),
    "ens_best2": ("best's score on two GANs of seed 000's settings (warm0_lam0_ink0.5, second_best), normalised",
                  ("warm0_lam0_ink0.5", "second_best")),
    "ens_best2_vae": ("best's score on the two GANs and vae's, each normalised by the held-out normals",
                      ("warm0_lam0_ink0.5", "second_best", "vae")),
    "ens_long_vae": ("best's score on the 400-epoch GAN (long_best) and vae's, normalised",
                     ("long_best", "vae")),
    "ens_long2": ("best's score on two 400-epoch GANs (long_best, second_long_best), normalised",
                  ("long_best", "second_long_best")),
    "ens_long2_vae": ("best's score on the two 400-epoch GANs and vae's, normalised",
                      ("long_best", "second_long_best", "vae")),
}
ALL_CANDIDATES = [*CANDIDATES, *FAMILY_CANDIDATES, *GAN_CANDIDATES, *ENSEMBLE_CANDIDATES]


def candidate_run(name: str):
  """(flagfile, train flags, evaluate flags) of a candidate; an ensemble's: ("ensemble", its members, [])."""
  if name in ENSEMBLE_CANDIDATES:
    return "ensemble", list(ENSEMBLE_CANDIDATES[name][1]), []
  if name in FAMILY_CANDIDATES:
    return FAMILY_CANDIDATES[name][1], [f"--val_fraction={VAL_FRACTION}"], ["--eval_split=val"]
  if name in GAN_CANDIDATES:  # evaluate reads the candidate's flagfile too: its changes again, as trained
    return (GAN_CANDIDATES[name][1], [*TRAIN, *GAN_CANDIDATES[name][2]],
            ["--eval_split=val", *BEST_SCORING, *GAN_CANDIDATES[name][2]])
  return "experiments/mnist.flags", TRAIN, ["--eval_split=val", *CANDIDATES[name][1]]


def changes(name: str) -> str:
  return (FAMILY_CANDIDATES.get(name) or GAN_CANDIDATES.get(name) or ENSEMBLE_CANDIDATES.get(name)
          or CANDIDATES[name])[0]


def run_name(candidate: str) -> str:
  return f"tune_{candidate}"


def summarize(results_dir: str, dataset: str, candidates) -> dict:
  import numpy as np
  out = {"dataset": dataset, "val_fraction": VAL_FRACTION, "train_flags": TRAIN, "candidates": {}}
  for name in candidates:
    records = report.load_records(results_dir, dataset, run_name(name))
    if not records:
      continue
    per_class = {}
    for r in sorted(records, key=lambda r: (r["class"], r["seed"])):
      per_class.setdefault(str(r["class"]), []).append(r["auroc"])
    out["candidates"][name] = {
        "changes": changes(name), "run": candidate_run(name),
        "per_class_val_auroc": {c: float(np.mean(v)) for c, v in per_class.items()},
        "mean_val_auroc": float(np.mean([np.mean(v) for v in per_class.values()])),
        "images_per_second": float(np.mean([r["images_per_second"] for r in records])),
        "n_val_images": sorted({r["n_normal"] + r["n_anomalous"] for r in records}),
        "seeds": sorted({r["seed"] for r in records}), "commits": sorted({r["eval_commit"] for r in records})}
  return out


def markdown(summary: dict) -> str:
  cands = summary["candidates"]
  classes = sorted({c for m in cands.values() for c in m["per_class_val_auroc"]}, key=int)
  lines = [f"# Tuning on {summary['dataset']}'s validation split (the test split is not used)", "",
           f"AnoGAN candidates: seed 000's GAN trained with `{' '.join(summary['train_flags'])}`, every one "
           "scoring the same GANs; the other families train with the same held-out normals; the other GANs "
           "(`*_best`) each train their own and score as best.flags does; an ensemble (`ens_*`) scores with "
           "the mean of its members' scores, each normalised by its held-out normals' (experiments/ensemble.py). "
           "All score `--eval_split=val` (held-out normals against as many train-split images of the other "
           "classes). Validation AUROC (%), ranked by the mean; images/s as measured in each run "
           "(other work shared the machine: compare speeds in compare_<dataset>.md; an ensemble's is its "
           "members' together).", "",
           "| candidate | changes | " + " | ".join(classes) + " | mean | images/s |",
           "| --- | --- | " + " | ".join("---" for _ in classes) + " | --- | --- |"]
  for name, m in sorted(cands.items(), key=lambda kv: -kv[1]["mean_val_auroc"]):
    row = [f"{100 * m['per_class_val_auroc'][c]:.1f}" if c in m["per_class_val_auroc"] else "" for c in classes]
    lines.append(f"| {name} | {m['changes']} | " + " | ".join(row) +
                 f" | **{100 * m['mean_val_auroc']:.1f}** | {m['images_per_second']:.0f} |")
  seeds = sorted({s for m in cands.values() for s in m["seeds"]})
  sizes = sorted({n for m in cands.values() for n in m["n_val_images"]})
  lines += ["", f"Seeds: {', '.join(map(str, seeds))}. Validation images per class: {', '.join(map(str, sizes))}. "
            f"Command: `{summary['command']}`. Written {summary['written']}."]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--candidates", default=",".join(CANDIDATES),
                      help=f"comma-separated, from: {', '.join(ALL_CANDIDATES)}")
  parser.add_argument("--classes", default="2,3,5,8")
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--runs_dir", default="runs")
  parser.add_argument("--results_dir", default="runs/results")
  parser.add_argument("--extra", default="", help="more flags for train and evaluate (quick runs)")
  args = parser.parse_args(argv)
  candidates = [c for c in args.candidates.replace(",", " ").split() if c]
  unknown = [c for c in candidates if c not in ALL_CANDIDATES]
  if unknown:
    parser.error(f"unknown candidate '{unknown[0]}'; use some of {', '.join(ALL_CANDIDATES)}")
  for name in candidates:
    if name in ENSEMBLE_CANDIDATES:
      members = ENSEMBLE_CANDIDATES[name][1]
      reproduce.ENSEMBLES[run_name(name)] = tuple(map(run_name, members))
      reproduce.RUNS.update({run_name(m): candidate_run(m) for m in members})
    else:
      reproduce.RUNS[run_name(name)] = candidate_run(name)
  tuning_dir = os.path.join(args.results_dir, "tuning")
  code = reproduce.main([f"--dataset={args.dataset}", f"--presets={','.join(map(run_name, candidates))}",
                         f"--classes={args.classes}", f"--seeds={args.seeds}", f"--runs_dir={args.runs_dir}",
                         f"--results_dir={tuning_dir}", f"--extra={args.extra}", "--no_tables"])
  if code:
    return code
  # The table covers every candidate recorded so far, not only this command's.
  summary = summarize(tuning_dir, args.dataset, ALL_CANDIDATES)
  summary["command"] = (f"python experiments/tune.py --dataset={args.dataset} --classes={args.classes} "
                        f"--seeds={args.seeds} --results_dir={args.results_dir} --candidates={args.candidates}")
  summary["written"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  base = os.path.join(tuning_dir, f"tuning_{args.dataset}")
  report.write_json_and_md(base, summary, markdown(summary))
  print(f"table: {base}.md")
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
