"""The README's score-report example: a folder dataset cut from real photographs, trained and scored.

  python experiments/photo_example.py [--workdir=runs/photo_example] [--results_dir=experiments/results/photo_example]
                                     [--flagfile=experiments/pictures.flags] (--flagfile= : today's defaults)

The photographs are the two bundled with scikit-learn (`sklearn.datasets.load_sample_images`:
china.jpg, the Summer Palace above Kunming Lake, and flower.jpg, a dahlia; both 640x427, by
their authors under CC BY 2.0 / public domain as scikit-learn's README states), so the example
needs nothing beyond the package's own dependencies and no download.

The "good parts" are tree foliage: 40x40 crops of the sunlit canopy in the lower left of
china.jpg, resized to 64x64 and written as PNGs in the MVTec AD layout. The normal test pictures
are other random crops of the same canopy, so they overlap training crops: the canopy is too small
for a disjoint test region of the same look. This is an example of the report, not a benchmark. Two kinds of
defect are made of other real photographic content pasted onto such test crops, with their masks:
`tiles` (a patch of the pagoda's orange roof tiles) and `petals` (a patch of the dahlia). Then the
commands of the README's "Your own images" section: train (with --val_fraction for a threshold),
evaluate (image and pixel AUROC, F1 at the threshold), and score the defective folder with a
report per picture and the --top gallery.

Writes into --results_dir: record.json (the commands, seed, commit, wall times, the metrics),
report_<defect>.png (score's report of the highest-scoring picture of each defect) and
top_tiles.png (score's --top gallery of the tiles folder). A rerun reuses a finished training (train resumes; the folder is
rebuilt identically from the seed). It trains the shipped picture preset (experiments/pictures.flags,
its own schedule); --flagfile names another preset, and an empty --flagfile= trains today's defaults
(seed 000's networks deepened for 64 pixels) with TRAIN_FLAGS' schedule. The record also holds the SSIM between each good test picture and
its reconstruction (mean and minimum: do reconstructions of good pictures look like them). Progress on stderr as reproduce.py shows it: each command's
bars and its time; no TensorFlow start-up notices.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import report  # noqa: E402  (experiments/report.py)
import reproduce  # noqa: E402

SIZE = 64          # --image_size: the pictures are written at this size
CROP = 40          # pixels of the photograph per picture
# (left, top, right, bottom) boxes of china.jpg holding only the sunlit canopy in the lower left,
# chosen by eye (the second keeps below the pagoda's wall).
BOXES = ((0, 345, 150, 427), (150, 368, 205, 427))
N_TRAIN, N_GOOD, N_DEFECT = 400, 40, 40
PATCH = (10, 20)   # side of a pasted patch, in pixels of the 64x64 picture

FOLDER_FLAGS = ["--dataset=folder", f"--image_size={SIZE}", "--channels=3", "--val_fraction=0.1", "--seed=0"]
TRAIN_FLAGS = [*FOLDER_FLAGS, "--batch_size=32", "--epochs=150", "--lr_decay_epoch=100"]


def train_flags(flagfile: str = "") -> list:
  """The training flags: a preset's flagfile (its own schedule) with the folder's, or the defaults'."""
  return [f"--flagfile={flagfile}", *FOLDER_FLAGS] if flagfile else list(TRAIN_FLAGS)


def reconstruction_ssim(model: str, folder: str) -> dict:
  """SSIM (11x11 Gaussian window, pictures in [0, 1]) between each picture of `folder` and the trained
  workdir's reconstruction of it: {"mean", "min", "n"}."""
  import tensorflow as tf

  from anogan_tf import models
  from anogan_tf.cli import flags as anogan_flags
  from anogan_tf.data import folder as folder_data
  from anogan_tf.engine import workdir as workdir_lib
  config = anogan_flags.workdir_config(model)
  family = models.family(config.model)
  scorer, _ = workdir_lib.load_scorer(config, model, family)
  paths = folder_data.list_images(folder, "pictures")
  x = np.stack([folder_data.read_image(p, config.image_shape) for p in paths])
  reconstruction = np.clip(scorer.score(x).reconstruction, -1.0, 1.0)
  ssim = tf.image.ssim(tf.constant((x + 1) / 2), tf.constant((reconstruction + 1) / 2), max_val=1.0).numpy()
  return {"mean": round(float(ssim.mean()), 4), "min": round(float(ssim.min()), 4), "n": len(paths)}


def photographs():
  from sklearn.datasets import load_sample_images
  data = load_sample_images()
  named = {os.path.basename(n): im for n, im in zip(data.filenames, data.images)}
  return named["china.jpg"], named["flower.jpg"]


def crops(photo, boxes, n, rng):
  """n random CROP x CROP crops inside boxes (left, top, right, bottom), each box as likely as its
  number of crop positions, resized to SIZE x SIZE and flipped left-right half the time."""
  positions = np.array([(r - l - CROP + 1) * (b - t - CROP + 1) for l, t, r, b in boxes], float)
  out = []
  for _ in range(n):
    left, top, right, bottom = boxes[rng.choice(len(boxes), p=positions / positions.sum())]
    x = rng.integers(left, right - CROP + 1)
    y = rng.integers(top, bottom - CROP + 1)
    picture = Image.fromarray(photo[y:y + CROP, x:x + CROP]).resize((SIZE, SIZE), Image.BILINEAR)
    if rng.random() < 0.5:
      picture = picture.transpose(Image.FLIP_LEFT_RIGHT)
    out.append(np.asarray(picture))
  return out


def tiles_source(china):
  """The orange roof tiles of the pagoda's lowest roof (rows 362-388, columns 208-300)."""
  return china[362:388, 208:300]


def petals_source(flower):
  """The dahlia's petals (rows 110-330, columns 190-430), without its centre."""
  return flower[110:220, 190:430]


def paste(picture, source, rng):
  """A random patch of source pasted at a random place: (picture, mask)."""
  side = int(rng.integers(*PATCH, endpoint=True))
  sy = rng.integers(0, source.shape[0] - side + 1)
  sx = rng.integers(0, source.shape[1] - side + 1)
  y, x = rng.integers(4, SIZE - side - 4, 2)
  out, mask = picture.copy(), np.zeros((SIZE, SIZE), np.uint8)
  out[y:y + side, x:x + side] = source[sy:sy + side, sx:sx + side]
  mask[y:y + side, x:x + side] = 255
  return out, mask


def build_folder(root: str, seed: int = 0) -> dict:
  """The MVTec AD layout under root, rebuilt from scratch; returns the counts."""
  china, flower = photographs()
  rng = np.random.default_rng(seed)
  if os.path.isdir(root):
    shutil.rmtree(root)
  counts = {}

  def save(array, *parts):
    path = os.path.join(root, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)

  for i, picture in enumerate(crops(china, BOXES, N_TRAIN, rng)):
    save(picture, "train", "good", f"{i:03d}.png")
  counts["train/good"] = N_TRAIN
  for i, picture in enumerate(crops(china, BOXES, N_GOOD, rng)):
    save(picture, "test", "good", f"{i:03d}.png")
  counts["test/good"] = N_GOOD
  for defect, source in (("tiles", tiles_source(china)), ("petals", petals_source(flower))):
    for i, picture in enumerate(crops(china, BOXES, N_DEFECT, rng)):
      picture, mask = paste(picture, source, rng)
      save(picture, "test", defect, f"{i:03d}.png")
      save(mask, "ground_truth", defect, f"{i:03d}_mask.png")
    counts[f"test/{defect}"] = N_DEFECT
  return counts


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/photo_example", help="data, training and scores go here")
  parser.add_argument("--results_dir", default="experiments/results/photo_example",
                      help="where the record and the figures go")
  parser.add_argument("--flagfile", default="experiments/pictures.flags",
                      help="the preset to train; empty: today's defaults with TRAIN_FLAGS' schedule")
  args = parser.parse_args(argv)
  workdir, results = os.path.abspath(args.workdir), os.path.abspath(args.results_dir)
  data, model = os.path.join(workdir, "data"), os.path.join(workdir, "model")
  os.makedirs(workdir, exist_ok=True)
  os.makedirs(results, exist_ok=True)

  counts = build_folder(data)
  print(f"folder dataset in {data}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
  commands = {
      "train": ["anogan_tf.train", *train_flags(args.flagfile and os.path.abspath(args.flagfile)), f"--data_dir={data}", f"--workdir={model}"],
      "evaluate": ["anogan_tf.evaluate", f"--workdir={model}"],
  }
  scored = {d: os.path.join(workdir, f"scored_{d}") for d in ("tiles", "petals")}
  for defect, out in scored.items():
    commands[f"score_{defect}"] = ["anogan_tf.score", f"--workdir={model}",
                                   f"--input={os.path.join(data, 'test', defect)}", f"--output={out}", "--top=8"]
  seconds = {}
  for k, (name, command) in enumerate(commands.items(), start=1):
    print("+ python -m " + " ".join(command), flush=True)
    seconds[name] = round(reproduce.run_logged(command, os.path.join(workdir, "log.txt")), 1)
    left = len(commands) - k
    reproduce.note(f"command {k} of {len(commands)} ({name}) done in {seconds[name]:.0f} s; "
                   f"{f'{left} left' if left else 'none left'}")

  metrics = json.load(open(os.path.join(model, "eval", "metrics.json")))
  threshold = json.load(open(os.path.join(model, "threshold.json")))
  flagged = {}
  for defect, out in scored.items():
    with open(os.path.join(out, "scores.csv"), newline="") as f:
      rows = list(csv.DictReader(f))
    flagged[defect] = sum(r["is_anomaly"] == "1" for r in rows)
    worst = max(rows, key=lambda r: float(r["score"]))
    shutil.copyfile(os.path.join(out, worst["report"]), os.path.join(results, f"report_{defect}.png"))
  shutil.copyfile(os.path.join(scored["tiles"], "top.png"), os.path.join(results, "top_tiles.png"))
  good_ssim = reconstruction_ssim(model, os.path.join(data, "test", "good"))

  def shown(command):
    return "python -m " + " ".join(a.replace(workdir, "$WORK") for a in command)

  record = {
      "script": " ".join(["python experiments/photo_example.py", *(sys.argv[1:] if argv is None else argv)]),
      "photographs": "sklearn.datasets.load_sample_images(): china.jpg, flower.jpg",
      "folder": counts,
      "commands": {name: shown(c) for name, c in commands.items()},
      "seed": 0,
      "commit": reproduce.commit(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "wall_seconds": seconds,
      "metrics": {k: metrics.get(k) for k in ("auroc", "pixel_auroc", "pixel_aupro", "precision", "recall",
                                              "f1", "threshold", "n_normal", "n_anomalous")},
      "threshold_percentile": threshold.get("percentile"),
      "flagged_by_score": {d: f"{n} of {N_DEFECT}" for d, n in flagged.items()},
      "ssim_good_reconstructions": good_ssim,
  }
  report.write_json(os.path.join(results, "record.json"), record)
  print(json.dumps(record["metrics"], indent=2))
  print(f"figures and record.json in {results}")
  return 0


if __name__ == "__main__":
  reproduce.as_a_command()
  sys.exit(main())
