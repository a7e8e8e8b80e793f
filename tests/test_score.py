import csv
import os

import numpy as np
import pytest
from PIL import Image

from anogan_tf import AnoganError, Config, train_lib
from anogan_tf.score_lib import read_images
from conftest import run_cli, synthetic_images
from test_train import tiny_data


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("score") / "run")
  train_lib.train(Config(batch_size=32, epochs=1, map_steps=(5, 5)), path, data=tiny_data(), progress=False)
  return path


def test_score_a_folder_of_pngs_and_an_npy(workdir, tmp_path):
  images = ((synthetic_images(3) + 1) * 127.5).round().astype(np.uint8)
  folder = tmp_path / "pngs"
  folder.mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image[..., 0]).save(folder / f"img{i}.png")
  np.save(tmp_path / "batch.npy", images[..., 0])
  for source, out in ((str(folder), tmp_path / "out_png"), (str(tmp_path / "batch.npy"), tmp_path / "out_npy")):
    result = run_cli("anogan_tf.score", f"--workdir={workdir}", f"--input={source}", f"--output={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "scores.csv") as f:
      rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(float(r["score"]) > 0 for r in rows)
    assert len(os.listdir(out / "heatmaps")) == 3
  png_scores = [float(r["score"]) for r in csv.DictReader(open(tmp_path / "out_png" / "scores.csv"))]
  npy_scores = [float(r["score"]) for r in csv.DictReader(open(tmp_path / "out_npy" / "scores.csv"))]
  np.testing.assert_allclose(png_scores, npy_scores, rtol=1e-5)  # same pixels, same seed, same scores


def test_read_images_rejects_bad_input(tmp_path):
  np.save(tmp_path / "wrong.npy", np.zeros((2, 32, 32), np.uint8))
  np.save(tmp_path / "range.npy", np.full((2, 28, 28), 3.0, np.float32))
  (tmp_path / "broken.png").write_bytes(b"not a png")
  np.savez(tmp_path / "full.npz", x=np.zeros((2, 28, 28), np.uint8))
  (tmp_path / "cut.npz").write_bytes((tmp_path / "full.npz").read_bytes()[:200])
  cases = [(str(tmp_path / "wrong.npy"), "expects"), (str(tmp_path / "range.npy"), r"\[-1, 1\]"),
           (str(tmp_path / "broken.png"), "not a readable image"), (str(tmp_path / "cut.npz"), "not a readable NumPy"), (str(tmp_path / "nothing"), "no PNG/JPEG")]
  for source, message in cases:
    with pytest.raises(AnoganError, match=message):
      read_images(source, (28, 28, 1))
