"""Command line: train a model family (--model, default anogan: AnoGAN's DCGAN) on the normal classes.

  python -m anogan_tf.train --flagfile=experiments/mnist.flags --workdir=runs/mnist0 --normal_classes=0
  python -m anogan_tf.train --flagfile=experiments/vae.flags --workdir=runs/vae0 --normal_classes=0
  python -m anogan_tf.train --workdir=runs/mnist0 --encoder_epochs=10   # AnoGAN's warm-start encoder

Running it again on the same workdir resumes from the last complete epoch. --encoder_epochs on a
finished AnoGAN workdir trains only the warm-start encoder (the GAN is kept).
"""

import os
import sys

from absl import flags

from anogan_tf.cli import flags as anogan_flags


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string("workdir", None, "Folder for checkpoints, history, samples and the final models.",
                      flag_values=flag_values)
  flags.DEFINE_boolean("overwrite", False, "Start over in a workdir trained with other settings.",
                       flag_values=flag_values)
  anogan_flags.define_config_flags(flag_values)


def run(FLAGS: flags.FlagValues) -> None:
  """The command, on its parsed flags."""
  from anogan_tf import models, train_lib  # deferred: --help stays fast, TensorFlow loads only to train
  from anogan_tf.engine.history import read_history
  from anogan_tf.errors import AnoganError
  if not FLAGS.workdir:
    raise AnoganError("--workdir is required; name a folder for the run, e.g. --workdir=runs/mnist0")
  base = None if FLAGS.overwrite else anogan_flags.workdir_config(FLAGS.workdir)
  config = anogan_flags.config_from_flags(base, FLAGS)
  history = train_lib.train(config, FLAGS.workdir, overwrite=FLAGS.overwrite)
  if history:
    losses = " ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if k not in ("epoch", "seconds"))
    print(f"trained {len(history)} epochs: {losses}; models in {FLAGS.workdir}")
  for stage in models.base.stages(models.family(config.model)):  # e.g. AnoGAN's warm-start encoder
    if getattr(config, stage.epochs_field) > 0:
      rows = read_history(os.path.join(FLAGS.workdir, stage.history))
      if rows:
        losses = " ".join(f"{k} {v:.4f}" for k, v in rows[-1].items() if k not in ("epoch", "seconds"))
        print(f"{stage.what.removeprefix('the ')}: {len(rows)} epochs: {losses}; "
              f"{FLAGS.workdir}/{stage.network}.keras")
  if config.val_fraction > 0:
    from anogan_tf.evaluation import threshold
    record = threshold.read(FLAGS.workdir)
    if record is not None:
      print(f"threshold {record['threshold']:.6g} (the {record['percentile']:g}th percentile of {record['n_val']} "
            f"held-out normal scores) in {threshold.path(FLAGS.workdir)}")


def main(argv=None) -> int:
  """`python -m anogan_tf.train` with `argv` (program name first; default sys.argv): the exit code."""
  return anogan_flags.run_command(define_flags, run, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
