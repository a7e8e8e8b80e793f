"""Writes tiny workdirs of every family into the folder given, with the code of commit 89d5f49 (the
layout before anogan_tf's subpackages), for tests/test_old_workdirs.py, which runs it with that
commit's anogan_tf first on PYTHONPATH (taken from git) and ANOGAN_DATA_DIR set:

  python tests/data/make_old_workdirs.py OUT

Each workdir is trained 1 of 2 epochs (so a newer train resumes it) and scored on 8 fixed test
images (expected.npz: the old code's scores, for the newer code to reproduce)."""

import os
import shutil
import sys

import numpy as np

from anogan_tf import Config, models
from anogan_tf import evaluate_lib, train_lib
from anogan_tf.data import load_one_class

TINY = dict(normal_classes=(1,), train_examples=64, batch_size=32, test_examples=8, latent_dim=8,
            g_dense_channels=4, g_filters=(4, 2), d_filters=(4, 8), e_filters=(4, 8), map_steps=(3, 2),
            map_batch_size=8, d_z_units=8, d_joint_units=(8,), epochs=1, val_fraction=0.25)
FAMILIES = {"anogan": dict(encoder_epochs=1), "egbad": {}, "ae": {}, "vae": {}}
KEEP = ("flags.txt", "history.csv", "encoder_history.csv", "threshold.json", "checkpoints")


def main(out):
  import anogan_tf
  print(anogan_tf.__file__)  # the caller checks it runs the old code
  os.makedirs(out, exist_ok=True)
  for name, extra in FAMILIES.items():
    config = Config(model=name, **TINY, **extra)
    work = os.path.join(out, name + ".full")
    shutil.rmtree(work, ignore_errors=True)
    train_lib.train(config, work, progress=False)
    family = models.family(name)
    scored = config.replace(initial_z="encoder", map_steps=(2,)) if name == "anogan" else config
    scorer, _ = evaluate_lib.load_scorer(scored, work, family)
    x = load_one_class(config).x_test
    result = scorer.score(x)
    dest = os.path.join(out, name)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for entry in sorted(os.listdir(work)):
      if entry.endswith(".keras") or entry in KEEP:
        src = os.path.join(work, entry)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(dest, entry))
    np.savez(os.path.join(dest, "expected.npz"), score=result.score, reconstruction=result.reconstruction)
    shutil.rmtree(work)


if __name__ == "__main__":
  main(sys.argv[1])
