"""Command line: export a trained workdir as a TensorFlow SavedModel that scores images without
anogan_tf (TF Serving, or `tf.saved_model.load` in any TensorFlow program).

  python -m anogan_tf.export --workdir=runs/mnist0 --output=exported/mnist0
  python -m anogan_tf.export --workdir=runs/mnist0 --output=exported/mnist0 --threshold=0.25 --overwrite
  python -m anogan_tf.export --workdir=runs/mnist0 --output=exported/warm --initial_z=encoder --map_steps=10

For AnoGAN the SavedModel runs the whole latent search (both Adam stages); for egbad, ae and vae
(and AnoGAN scoring at E(x), --initial_z=encoder --map_steps=0) one forward pass. Signatures:
serving_default (float32 images in [-1, 1]), serving_uint8 (uint8 pixels 0..255) and, for a search
from a random start, serving_from_z (images and the starting z); see anogan_tf/export_lib.py. It
scores chunks of --map_batch_size images (64 when 0), the last one padded: use the evaluation's
--map_batch_size to reproduce its scores to the bit.

Settings come from the workdir's flags.txt (--model included); scoring settings given here
(--lam, --map_steps, --map_lrs, --feature_layer, --initial_z, --map_seed, ...) override them, as in
evaluate (another --seed than the workdir's sets --map_seed). The threshold of is_anomaly is
--threshold, else the one score decides with: the
--threshold_percentile of the held-out scores in the workdir's threshold.json (written by training
with --val_fraction), refused with the reason score gives when it does not apply (computed with
other scoring settings or on other weights). The SavedModel is written beside --output and
renamed into place: a failing export leaves --output as it was.
"""

import sys

from absl import flags

from anogan_tf.cli import flags as anogan_flags


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string("workdir", None, "A trained workdir (holding its models' .keras files and flags.txt).",
                      flag_values=flag_values)
  flags.DEFINE_string("output", None, "Folder to write the SavedModel to (it must not exist, or use --overwrite).",
                      flag_values=flag_values)
  flags.DEFINE_float("threshold", None, "Score above which is_anomaly is true; default: the workdir's threshold.json "
                     "at --threshold_percentile, as score decides.", flag_values=flag_values)
  flags.DEFINE_boolean("overwrite", False, "Replace a SavedModel already at --output.", flag_values=flag_values)
  anogan_flags.define_config_flags(flag_values)


def run(FLAGS: flags.FlagValues) -> None:
  """The command, on its parsed flags."""
  from anogan_tf import export_lib
  from anogan_tf.config import evaluation_config
  from anogan_tf.errors import AnoganError
  for name in ("workdir", "output"):
    if not FLAGS[name].value:
      raise AnoganError(f"--{name} is required; see the usage in `python -m anogan_tf.export --help`")
  base = anogan_flags.workdir_config(FLAGS.workdir)
  if base is None:
    raise AnoganError(f"{FLAGS.workdir} holds no flags.txt: not a trained workdir; train first with "
                      f"python -m anogan_tf.train --workdir={FLAGS.workdir}")
  config = evaluation_config(base, anogan_flags.config_from_flags(base, FLAGS))
  metadata = export_lib.export(config, FLAGS.workdir, FLAGS.output, threshold=FLAGS.threshold,
                               overwrite=FLAGS.overwrite)
  print(f"exported {metadata['model']} ({', '.join(metadata['signatures'])}; threshold {metadata['threshold']:.6g} "
        f"from {metadata['threshold_source']}) to {FLAGS.output}")


def main(argv=None) -> int:
  """`python -m anogan_tf.export` with `argv` (program name first; default sys.argv): the exit code."""
  return anogan_flags.run_command(define_flags, run, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
