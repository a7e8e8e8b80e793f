"""A user's whole path, through the commands (their main(argv), in the test process): a folder of RGB 64x64 PNGs in the MVTec AD layout
(with masks) -> train (a threshold from held-out good pictures) -> evaluate (image and pixel AUROC,
F1 at the threshold) -> score a folder (is_anomaly) -> export -> the SavedModel, loaded with
tf.saved_model.load alone, gives score's scores for the same pictures and starting z. (That a
SavedModel needs no anogan_tf is test_export.py's, in a fresh interpreter that cannot import it,
for every family: a process of its own here would test that again, for seconds of TensorFlow import.)"""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_command
from PIL import Image

TINY = ["--image_size=64", "--epochs=2", "--batch_size=16", "--lr_decay_epoch=0", "--map_steps=3,3",
        "--map_batch_size=64", "--val_fraction=0.2", "--seed=3"]

def serve(saved, folder, names):
  """The SavedModel's serving_from_z on the pictures `names` of `folder`, from the start z that
  README "Export" computes without anogan_tf (score's seeded stream): (scores, is_anomaly)."""
  model = tf.saved_model.load(str(saved))
  meta = json.loads(model.metadata.numpy().decode())
  x = np.stack([np.asarray(Image.open(folder / n).convert("RGB"), np.float32) / 127.5 - 1 for n in names])
  z0 = np.random.default_rng(meta["seed"]).uniform(-1, 1, (len(names), meta["latent_dim"])).astype(np.float32)
  result = model.signatures["serving_from_z"](images=tf.constant(x), initial_z=tf.constant(z0))
  return result["score"].numpy().tolist(), result["is_anomaly"].numpy().tolist()


def blob(rng, size=64):
  """A soft coloured disc on a dark background: a 'good part'."""
  yy, xx = np.mgrid[0:size, 0:size]
  cy, cx = rng.uniform(0.4, 0.6, 2) * size
  disc = np.clip(1.2 - np.hypot(yy - cy, xx - cx) / (size * 0.3), 0, 1)
  colour = np.array([0.8, 0.5, 0.3]) + rng.uniform(-0.05, 0.05, 3)
  return disc[..., None] * colour


def save(array01, path):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.uint8(np.round(np.clip(array01, 0, 1) * 255))).save(path)


def make_folder(root, rng):
  for i in range(40):
    save(blob(rng), root / "train" / "good" / f"{i:03d}.png")
  for i in range(6):
    save(blob(rng), root / "test" / "good" / f"{i:03d}.png")
  for i in range(6):
    image, mask = blob(rng), np.zeros((64, 64))
    y, x = rng.integers(8, 40, 2)
    image[y:y + 14, x:x + 14] = [0.1, 0.9, 0.9]  # a cyan scratch
    mask[y:y + 14, x:x + 14] = 1
    save(image, root / "test" / "scratch" / f"{i:03d}.png")
    save(mask, root / "ground_truth" / "scratch" / f"{i:03d}_mask.png")


@pytest.mark.slow
def test_a_folder_of_pictures_from_training_to_an_exported_model(tmp_path):
  root, work = tmp_path / "parts", tmp_path / "work"
  make_folder(root, np.random.default_rng(0))

  done = run_command("train", "--dataset=folder", f"--data_dir={root}", f"--workdir={work}", *TINY)
  assert done.returncode == 0, done.stderr[-3000:]
  stored = json.loads((work / "threshold.json").read_text())
  assert stored["n_val"] == 8 and np.isfinite(stored["threshold"])

  done = run_command("evaluate", f"--workdir={work}")
  assert done.returncode == 0, done.stderr[-3000:]
  metrics = json.loads((work / "eval" / "metrics.json").read_text())
  assert (metrics["n_normal"], metrics["n_anomalous"], metrics["image_shape"]) == (6, 6, [64, 64, 3])
  for key in ("auroc", "pixel_auroc", "pixel_aupro", "f1", "precision", "recall"):
    assert 0.0 <= metrics[key] <= 1.0, key
  assert metrics["threshold"] == stored["threshold"]

  scratches, scored = root / "test" / "scratch", tmp_path / "scored"
  done = run_command("score", f"--workdir={work}", f"--input={scratches}", f"--output={scored}", "--top=3")
  assert done.returncode == 0, done.stderr[-3000:]
  with open(scored / "scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  names = [r["file"] for r in rows]
  assert sorted(names) == [f"{i:03d}.png" for i in range(6)]
  scores = np.array([float(r["score"]) for r in rows])
  assert [r["is_anomaly"] for r in rows] == [str(int(s > stored["threshold"])) for s in scores]
  assert all((scored / r["report"]).is_file() for r in rows)

  saved = tmp_path / "saved"
  done = run_command("export", f"--workdir={work}", f"--output={saved}")
  assert done.returncode == 0, done.stderr[-3000:]
  served, is_anomaly = serve(saved, scratches, names)
  # The same pictures from the same starting z (score's seeded stream), in chunks of one size.
  np.testing.assert_allclose(served, scores, rtol=1e-5)
  assert is_anomaly == [bool(s > stored["threshold"]) for s in served]
