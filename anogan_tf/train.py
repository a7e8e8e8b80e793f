"""Command line: train AnoGAN's DCGAN on the normal classes.

  python -m anogan_tf.train --flagfile=experiments/mnist.flags --workdir=runs/mnist0 --normal_classes=0

Running it again on the same workdir resumes from the last complete epoch.
"""

from absl import flags

from anogan_tf import flags as anogan_flags

flags.DEFINE_string("workdir", None, "Folder for checkpoints, history, samples and the final models.")
flags.DEFINE_boolean("overwrite", False, "Start over in a workdir trained with other settings.")
anogan_flags.define_config_flags()
FLAGS = flags.FLAGS


def main():
  from anogan_tf import train_lib  # deferred: --help stays fast, TensorFlow loads only to train
  from anogan_tf.errors import AnoganError
  if not FLAGS.workdir:
    raise AnoganError("--workdir is required; name a folder for the run, e.g. --workdir=runs/mnist0")
  base = None if FLAGS.overwrite else anogan_flags.workdir_config(FLAGS.workdir)
  config = anogan_flags.config_from_flags(base)
  history = train_lib.train(config, FLAGS.workdir, overwrite=FLAGS.overwrite)
  if history:
    last = history[-1]
    print(f"trained {len(history)} epochs: g_loss {last['g_loss']:.4f} d_loss {last['d_loss']:.4f} "
          f"d_acc {last['d_acc']:.4f}; models in {FLAGS.workdir}")


if __name__ == "__main__":
  anogan_flags.run(main)
