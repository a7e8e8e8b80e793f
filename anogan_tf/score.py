"""Command line: score your own images with a trained workdir.

  python -m anogan_tf.score --workdir=runs/mnist_0 --input=my_images/ --output=scored/
  python -m anogan_tf.score --workdir=runs/mnist_0 --input='shots/*.png' --output=scored/
  python -m anogan_tf.score --workdir=runs/mnist_0 --input=batch.npy --output=scored/

Writes OUT/heatmaps/<name>.png (the residual map |x - reconstruction|; AnoGAN's reconstruction is
G(z*)), then OUT/scores.csv (name, score, the family's parts of the score: residual and
discrimination for anogan, heatmap). <name> is the picture's path relative to the folder holding all the
pictures (a.png -> heatmaps/a.png.png), or the index in an array (0 -> heatmaps/0.png).
Pictures must have the model's size; a 1-channel model takes grayscale pictures, a 3-channel
model colour ones. Integer images are read as 0..255 pixels; float arrays must be in [-1, 1].
Everything is checked before anything is written: a failing score leaves OUT as it was.
Settings come from the workdir's flags.txt (--model included); scoring settings given here override
them, as in evaluate.
"""

from absl import flags

from anogan_tf import flags as anogan_flags

flags.DEFINE_string("workdir", None, "A trained workdir (holding its models' .keras files and flags.txt).")
flags.DEFINE_string("input", None, "A folder or glob of PNG/JPEG images, or an .npy/.npz array.")
flags.DEFINE_string("output", None, "Folder for scores.csv and heatmaps/.")
anogan_flags.define_config_flags()
FLAGS = flags.FLAGS


def main():
  from anogan_tf import score_lib
  from anogan_tf.config import evaluation_config
  from anogan_tf.errors import AnoganError
  for name in ("workdir", "input", "output"):
    if not FLAGS[name].value:
      raise AnoganError(f"--{name} is required; see the usage in `python -m anogan_tf.score --help`")
  base = anogan_flags.workdir_config(FLAGS.workdir)
  if base is None:
    raise AnoganError(f"{FLAGS.workdir} holds no flags.txt: not a trained workdir; train first")
  config = evaluation_config(base, anogan_flags.config_from_flags(base))
  scores = score_lib.score_images(config, FLAGS.workdir, FLAGS.input, FLAGS.output)
  print(f"scored {len(scores)} images (min {scores.min():.4f}, max {scores.max():.4f}); "
        f"see {FLAGS.output}/scores.csv and {FLAGS.output}/heatmaps/")


if __name__ == "__main__":
  anogan_flags.run(main)
