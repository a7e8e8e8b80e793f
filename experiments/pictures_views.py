"""A probe of trained DRAEM workdirs on the picture benchmark's validation pictures: where the
anomaly map loses (per defect kind: image AUROC against the good pictures, pixel AUROC over the
good pictures and that kind's), and what averaging the map over the eight quarter turns and
mirrors of each picture (test-time views, not a flag of the scorer) would change.

  python experiments/pictures_views.py --workdirs=RUNS/draem/grass_seed6,RUNS/draem/coins_seed6 [--data_root=/tmp/pb]

Each workdir's category is the part of its name before `_seed`. Settings, each with the workdir's
own --draem_score_window and the max of the map as the image score: `shipped` (the map averaged over
the picture and its four copies shifted by --draem_score_shifts, as evaluate scores), `dih8` (the
mean of the maps of the eight turned or mirrored pictures, each turned back; no shifts), `dih8_s2`
(each of the eight with the shifts: 40 passes per picture). Prints one line per workdir and setting.
Validation pictures only.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from anogan_tf import models
from anogan_tf.config import Config
from anogan_tf.data import folder
from anogan_tf.engine.workdir import load_networks
from anogan_tf.evaluation import metrics
from anogan_tf.models import draem


def views(x, turn_back=False):
  """The eight quarter turns (k = 0..3) of the picture and of its mirror; with turn_back, `x` is a
  list of their maps, each turned back to the picture's orientation."""
  out, i = [], 0
  for mirrored in (False, True):
    for k in range(4):
      if turn_back:
        m = tf.image.rot90(x[i], -k)
        out.append(m[:, :, ::-1] if mirrored else m)
        i += 1
      else:
        out.append(tf.image.rot90(x[:, :, ::-1] if mirrored else x, k))
  return out


def read(root, shape):
  """(pictures, defect kind per picture ('good' for the good ones), masks) of root/test, listed and
  masked as evaluate lists and masks a folder (anogan_tf.data.folder)."""
  paths, kinds = folder.test_files(root)
  files, why = folder.mask_files(root, paths, kinds)
  if files is None:
    raise SystemExit(f"pictures_views.py: error: {why}")
  x = np.stack([folder.read_image(p, shape) for p in paths]).astype(np.float32)
  return x, np.array(kinds), folder.read_masks(files, shape)


def maps_of(scorer, x, turned):
  out = []
  for i in range(0, len(x), 32):
    batch = tf.constant(x[i:i + 32])
    if turned:
      probability = tf.add_n(views([scorer.shifted_probability(v)[1] for v in views(batch)], turn_back=True)) / 8.0
    else:
      probability = scorer.shifted_probability(batch)[1]
    out.append(tf.nn.avg_pool2d(probability, scorer.window, 1, "SAME").numpy()[..., 0])
  return np.concatenate(out)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdirs", required=True, help="comma-separated trained DRAEM workdirs (<category>_seed<s>)")
  parser.add_argument("--data_root", default="/tmp/pb", help="the picture benchmark's folders (pictures_benchmark.py)")
  args = parser.parse_args(argv)
  for workdir in args.workdirs.split(","):
    category = os.path.basename(workdir.rstrip("/")).split("_seed")[0]
    if not os.path.isfile(os.path.join(workdir, "flags.txt")):
      parser.error(f"{workdir} holds no flags.txt: name a trained DRAEM workdir (RUNS/draem/<category>_seed<s>)")
    if not os.path.isdir(os.path.join(args.data_root, category, "validation", "test")):
      parser.error(f"{args.data_root} has no {category}/validation/test; name the --data_root the workdir trained from")
    config = Config.from_flagfile_text(open(os.path.join(workdir, "flags.txt")).read())
    if config.model != "draem":
      parser.error(f"{workdir} is a {config.model} workdir; this probe reads DRAEM's anomaly map")
    networks = load_networks(workdir, models.family("draem"), config)
    x, kinds, masks = read(os.path.join(args.data_root, category, "validation"), config.image_shape)
    good = kinds == "good"
    for name, shifts, turned in (("shipped", config.draem_score_shifts, False), ("dih8", 0, True),
                                 ("dih8_s2", config.draem_score_shifts, True)):
      scorer = draem.DraemScorer(networks, draem.score_window(config), batch_size=64, shifts=shifts)
      maps = maps_of(scorer, x, turned)
      score = maps.reshape(len(maps), -1).max(1)
      line = [f"{os.path.basename(workdir)} {name}: image {100 * roc_auc_score(~good, score):.1f}",
              f"pixel {100 * metrics.pixel_auroc(masks, maps):.1f}", f"AUPRO {100 * metrics.pixel_aupro(masks, maps):.1f} |"]
      for kind in sorted(set(kinds) - {"good"}):
        pick = good | (kinds == kind)
        line.append(f"{kind} {100 * roc_auc_score(kinds[pick] == kind, score[pick]):.1f}"
                    f" / {100 * metrics.pixel_auroc(masks[pick], maps[pick]):.1f}")
      print(" ".join(line), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
