"""How well an encoder inverts its generator: z drawn from the GAN's prior, against E(G(z)).

  python experiments/encoder_inversion.py --dataset=mnist --methods=egbad,anogan_warm_0 --seeds=0 \
      --results_dir=experiments/results

For every run of the methods (their per-run records, as `make compare` wrote them) it loads the
workdir's generator.keras and encoder.keras, draws `--samples` z from the workdir's --z_prior and
writes `<results_dir>/encoder_inversion_<dataset>.json` and `.md`, one row per run:

- correlation: the Pearson correlation of a coordinate of z with the same coordinate of E(G(z)),
  averaged over the latent coordinates (1: E inverts G; 0: E(G(z)) does not follow z at all);
- error: the mean |z - E(G(z))|, beside `chance`, the mean |z - z'| for independent draws z, z';
- the run's AUROC, for reading the two together; the row's commit, command and wall seconds.

EGBAD's encoder is trained to invert G (the BiGAN's optimum is E = G^-1); the warm-start encoder
is trained on real images only, to reconstruct them through G.
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

import compare  # noqa: E402
import report  # noqa: E402
import reproduce  # noqa: E402


def inversion(generator, encoder, latent_dim: int, z_prior: str, samples: int = 2000, seed: int = 0) -> dict:
  """{correlation, error, chance} of E(G(z)) against z for `samples` draws from `z_prior`
  ("uniform": U(-1, 1); "normal": N(0, 1)); G and E in inference mode."""
  rng = np.random.default_rng(seed)
  draw = (lambda n: rng.standard_normal((n, latent_dim))) if z_prior == "normal" else (
      lambda n: rng.uniform(-1.0, 1.0, (n, latent_dim)))
  z = draw(samples).astype(np.float32)
  encoded = np.asarray(encoder(generator(z, training=False), training=False), np.float64)
  z = z.astype(np.float64)
  centred_z, centred_e = z - z.mean(0), encoded - encoded.mean(0)
  spread = np.sqrt((centred_z ** 2).sum(0) * (centred_e ** 2).sum(0))
  correlation = np.where(spread > 0, (centred_z * centred_e).sum(0) / np.where(spread > 0, spread, 1.0), 0.0)
  return {"correlation": float(correlation.mean()), "error": float(np.abs(z - encoded).mean()),
          "chance": float(np.abs(z - draw(samples)).mean())}


def markdown(dataset: str, rows: list, samples: int) -> str:
  lines = [f"# {dataset}: how well each encoder inverts its generator", "",
           f"{samples} z from each GAN's prior; correlation = Pearson correlation of z with E(G(z)) per "
           "latent coordinate, averaged (1: E inverts G); error = mean |z - E(G(z))|, chance = mean |z - z'| "
           "for independent draws. Command: `" + rows[0]["command"] + "`.", "",
           "| method | class | seed | correlation | error | chance | AUROC (%) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['class']} | {r['seed']} | {r['correlation']:.3f} | {r['error']:.3f} | "
                 f"{r['chance']:.3f} | {100 * r['auroc']:.1f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="mnist")
  parser.add_argument("--methods", default="egbad,anogan_warm_0")
  parser.add_argument("--classes", default="all")
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--samples", type=int, default=2000)
  parser.add_argument("--results_dir", default="runs/results")
  args = parser.parse_args(argv)
  import keras

  import anogan_tf  # noqa: F401  (registers the networks for load_model)
  from anogan_tf.cli import flags as anogan_flags
  classes, seeds = compare.selected(args.dataset, args.classes, args.seeds)
  command = shlex.join(["python", "experiments/encoder_inversion.py", *(sys.argv[1:] if argv is None else argv)])
  commit = reproduce.commit()
  rows = []
  for method in [m for m in args.methods.replace(",", " ").split() if m]:
    for record in compare.method_records(args.results_dir, args.dataset, method, classes, seeds):
      began = time.perf_counter()
      workdir = compare.record_workdir(record)
      config = anogan_flags.workdir_config(workdir)
      generator, encoder = (keras.models.load_model(os.path.join(workdir, f"{name}.keras"))
                            for name in ("generator", "encoder"))
      rows.append({"method": method, "class": record["class"], "seed": record["seed"], "auroc": record["auroc"],
                   "workdir": workdir, "commit": commit, "command": command,
                   **inversion(generator, encoder, config.latent_dim, config.z_prior, args.samples)})
      rows[-1]["seconds"] = round(time.perf_counter() - began, 2)  # loading both networks included
      print(f"{method} class {record['class']} seed {record['seed']}: correlation {rows[-1]['correlation']:.3f}")
  if not rows:
    print(f"error: no records of {args.methods} in {args.results_dir}/runs; run make compare first", file=sys.stderr)
    return 1
  base = os.path.join(args.results_dir, f"encoder_inversion_{args.dataset}")
  report.write_json_and_md(base, rows, markdown(args.dataset, rows, args.samples))
  print(f"table: {base}.md")
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
