"""Command line: score your own images with a trained workdir, and decide which are anomalous.

  python -m anogan_tf.score --workdir=runs/mnist_0 --input=my_images/ --output=scored/
  python -m anogan_tf.score --workdir=runs/mnist_0 --input='shots/*.png' --output=scored/ --top=20
  python -m anogan_tf.score --workdir=runs/mnist_0 --input=photos/ --output=scored/ --grayscale
  python -m anogan_tf.score --workdir=runs/mnist_0 --input=batch.npy --output=scored/

Writes OUT/reports/<name>.png (query, reconstruction, and the residual |x - reconstruction| over
the query with a colour bar on one scale for the whole run; AnoGAN's reconstruction is G(z*)),
OUT/top.png (the --top most anomalous), then OUT/scores.csv: file, score, is_anomaly, the
family's parts of the score (residual and discrimination for anogan), report. <name> is the
picture's path relative to the folder holding all the pictures (a.png -> reports/a.png.png), or
the index in an array (0 -> reports/0.png).

is_anomaly is 1 when the score is above the workdir's threshold (threshold.json: the
--threshold_percentile of the held-out normals' scores, stored by training with --val_fraction),
else 0; it is empty when the workdir has no threshold or the threshold was computed with other
scoring settings (a line says which).

Pictures are read as training reads a folder's: any size is resized to the model's (bilinear
with antialiasing, the aspect ratio not kept), so a picture gets the score evaluate gives the same
file. Their channels must be the model's, unless --grayscale (colour to gray for a 1-channel
model) converts them. Arrays must have the model's size and channels (--grayscale converts colour
ones too). Integer images are read as 0..255 pixels; float arrays must be in [-1, 1].
Everything is checked before anything is written: a failing score leaves OUT as it was. Settings
come from the workdir's flags.txt (--model included); scoring settings given here override them,
as in evaluate.
"""

import sys

from absl import flags

from anogan_tf.cli import flags as anogan_flags


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string("workdir", None, "A trained workdir (holding its models' .keras files and flags.txt).",
                      flag_values=flag_values)
  flags.DEFINE_string("input", None, "A folder or glob of PNG/JPEG images, or an .npy/.npz array (series: also a "
                      ".csv, one series a line).",
                      flag_values=flag_values)
  flags.DEFINE_string("output", None, "Folder for scores.csv, reports/ and top.png.", flag_values=flag_values)
  flags.DEFINE_integer("top", 10, "top.png shows this many of the most anomalous images (0: no top.png).",
                       flag_values=flag_values)
  flags.DEFINE_boolean("resize", False, "No effect, accepted for older command lines: pictures of any size are resized "
                       "to the model's, as in training.", flag_values=flag_values)
  flags.DEFINE_boolean("grayscale", False, "Turn colour pictures (as training's decoder does) and arrays (ITU-R 601 "
                       "luma) gray for a 1-channel model.", flag_values=flag_values)
  anogan_flags.define_config_flags(flag_values)


def run(FLAGS: flags.FlagValues) -> None:
  """The command, on its parsed flags."""
  from anogan_tf import score_lib
  from anogan_tf.config import evaluation_config
  from anogan_tf.errors import AnoganError
  for name in ("workdir", "input", "output"):
    if not FLAGS[name].value:
      raise AnoganError(f"--{name} is required; see the usage in `python -m anogan_tf.score --help`")
  base = anogan_flags.workdir_config(FLAGS.workdir)
  if base is None:
    raise AnoganError(f"{FLAGS.workdir} holds no flags.txt: not a trained workdir; train first")
  config = evaluation_config(base, anogan_flags.config_from_flags(base, FLAGS))
  scored = score_lib.score_images(config, FLAGS.workdir, FLAGS.input, FLAGS.output, top=FLAGS.top,
                                  resize=FLAGS.resize, grayscale=FLAGS.grayscale)
  print(scored.decision.note)
  flagged = "" if scored.is_anomaly is None else f", {int(scored.is_anomaly.sum())} anomalous"
  gallery = f", {FLAGS.output}/{score_lib.TOP_GALLERY}" if scored.top else ""
  print(f"scored {len(scored.score)} images{flagged} (scores {scored.score.min():.4g} to {scored.score.max():.4g}); "
        f"see {FLAGS.output}/{score_lib.SCORES_CSV}, {FLAGS.output}/reports/{gallery}")


def main(argv=None) -> int:
  """`python -m anogan_tf.score` with `argv` (program name first; default sys.argv): the exit code."""
  return anogan_flags.run_command(define_flags, run, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
