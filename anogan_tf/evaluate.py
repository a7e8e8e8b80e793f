"""Command line: score the test split with a trained workdir and write DIR/eval/.

  python -m anogan_tf.evaluate --workdir=runs/mnist0 [--test_examples=500]
  python -m anogan_tf.evaluate --workdir=runs/mnist0 --flagfile=experiments/paper.flags \
      --eval_dir=runs/mnist0/eval_paper
  python -m anogan_tf.evaluate --workdir=runs/mnist0 --initial_z=encoder --map_steps=10 \
      --eval_dir=runs/mnist0/eval_warm10

Settings come from the workdir's flags.txt, --model (the family) included. Scoring settings
given here (--lam, --map_steps, --map_lrs, --map_reduction, --z_init, --z_init_std,
--feature_layer, --initial_z, --vae_score, --map_seed, ...) override them; any other flag must match the workdir,
whose trained networks fix it (--epochs is ignored). --seed stays the workdir's, which drew the
held-out split (--eval_split=val) and the --test_examples subset; another --seed here sets --map_seed.

AnoGAN's warm start (train its encoder first with `train --encoder_epochs=N`): --initial_z=encoder
starts the search at E(x); then --map_steps=K runs K steps at the last --map_lrs (seed 000: 1e-2),
--map_steps=K1,K2 keeps both stages, and --map_steps=0 scores at E(x) with no search.
"""

import os
import sys

from absl import flags

from anogan_tf.cli import flags as anogan_flags


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string("workdir", None, "A trained workdir (holding its models' .keras files and flags.txt).",
                      flag_values=flag_values)
  flags.DEFINE_string("eval_dir", None, "Where to write the evaluation (default: WORKDIR/eval); another "
                      "folder keeps an evaluation with other mapping settings beside the first.",
                      flag_values=flag_values)
  anogan_flags.define_config_flags(flag_values)


def run(FLAGS: flags.FlagValues) -> None:
  """The command, on its parsed flags."""
  from anogan_tf import evaluate_lib
  from anogan_tf.config import evaluation_config
  from anogan_tf.errors import AnoganError
  if not FLAGS.workdir:
    raise AnoganError("--workdir is required; name a trained workdir, e.g. --workdir=runs/mnist0")
  base = anogan_flags.workdir_config(FLAGS.workdir)
  if base is None:
    raise AnoganError(f"{FLAGS.workdir} holds no flags.txt: not a trained workdir; train first with "
                      f"python -m anogan_tf.train --workdir={FLAGS.workdir}")
  out_dir = FLAGS.eval_dir or os.path.join(FLAGS.workdir, "eval")
  config = evaluation_config(base, anogan_flags.config_from_flags(base, FLAGS))
  metrics = evaluate_lib.evaluate(config, FLAGS.workdir, out_dir=out_dir)
  print(f"AUROC {metrics['auroc']:.4f}  AUPRC {metrics['auprc']:.4f} (normals as positive "
        f"{metrics['auprc_normal']:.4f})  ({metrics['n_normal']} normal, {metrics['n_anomalous']} anomalous, "
        f"{metrics['images_per_second']:.1f} images/s); figures in {out_dir}/")
  if "pixel_auroc" in metrics:  # a folder dataset with masks: where the residual maps put the anomaly
    print(f"pixels: AUROC {metrics['pixel_auroc']:.4f}  AUPRO {metrics['pixel_aupro']:.4f} (up to 30% false positives)")
  elif "pixel_metrics" in metrics:
    print(f"pixel metrics {metrics['pixel_metrics']}")
  at = (f": precision {metrics['precision']:.4f}, recall {metrics['recall']:.4f}, F1 {metrics['f1']:.4f}"
        if "f1" in metrics else "")
  print(f"{metrics['threshold_note']}{at}")


def main(argv=None) -> int:
  """`python -m anogan_tf.evaluate` with `argv` (program name first; default sys.argv): the exit code."""
  return anogan_flags.run_command(define_flags, run, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
