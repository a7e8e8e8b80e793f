import csv
import os

import numpy as np
import pytest
from PIL import Image

from anogan_tf import AnoganError, Config, score_lib, train_lib
from anogan_tf.score_lib import read_images
from conftest import run_cli, synthetic_images
from test_train import tiny_data


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("score") / "run")
  train_lib.train(Config(batch_size=32, epochs=1, map_steps=(5, 5)), path, data=tiny_data(), progress=False)
  return path


def pixels(n, seed=0):
  return ((synthetic_images(n, seed=seed) + 1) * 127.5).round().astype(np.uint8)


def read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_score_a_folder_of_pngs_and_an_npy(workdir, tmp_path):
  images = pixels(3)
  folder = tmp_path / "pngs"
  folder.mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image[..., 0]).save(folder / f"img{i}.png")
  np.save(tmp_path / "batch.npy", images[..., 0])
  for source, out in ((str(folder), tmp_path / "out_png"), (str(tmp_path / "batch.npy"), tmp_path / "out_npy")):
    result = run_cli("anogan_tf.score", f"--workdir={workdir}", f"--input={source}", f"--output={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_csv(out / "scores.csv")
    assert list(rows[0]) == ["name", "score", "residual", "discrimination", "heatmap"]
    assert len(rows) == 3 and all(float(r["score"]) > 0 for r in rows)
    assert sorted(os.listdir(out / "heatmaps")) == sorted(os.path.basename(r["heatmap"]) for r in rows)
    assert all(os.path.isfile(out / r["heatmap"]) for r in rows)
  assert [r["name"] for r in read_csv(tmp_path / "out_png" / "scores.csv")] == ["img0.png", "img1.png", "img2.png"]
  assert [r["heatmap"] for r in read_csv(tmp_path / "out_npy" / "scores.csv")] == [f"heatmaps/{i}.png" for i in range(3)]
  png_scores = [float(r["score"]) for r in read_csv(tmp_path / "out_png" / "scores.csv")]
  npy_scores = [float(r["score"]) for r in read_csv(tmp_path / "out_npy" / "scores.csv")]
  np.testing.assert_allclose(png_scores, npy_scores, rtol=1e-5)  # same pixels, same seed, same scores


def test_names_are_unique_relative_paths(tmp_path):
  """a.png and a.jpg, or x.png in two folders of a glob, keep apart (each gets its own heatmap)."""
  images = pixels(4)
  (tmp_path / "one").mkdir()
  Image.fromarray(images[0, ..., 0]).save(tmp_path / "one" / "a.png")
  Image.fromarray(images[1, ..., 0]).save(tmp_path / "one" / "a.jpg", quality=100)
  Image.fromarray(images[2, ..., 0]).save(tmp_path / "one" / ".hidden.png")  # dotfiles are skipped
  (tmp_path / "one" / "notes.txt").write_text("not an image\n")  # so are other extensions
  for d, image in (("d1", images[2]), ("d2", images[3])):
    (tmp_path / "two" / d).mkdir(parents=True)
    Image.fromarray(image[..., 0]).save(tmp_path / "two" / d / "x.png")
  assert read_images(str(tmp_path / "one"), (28, 28, 1))[1] == ["a.jpg", "a.png"]
  assert read_images(str(tmp_path / "two" / "*" / "x.png"), (28, 28, 1))[1] == ["d1/x.png", "d2/x.png"]
  assert read_images(str(tmp_path / "one" / "a.png"), (28, 28, 1))[1] == ["a.png"]  # a single file
  odd = tmp_path / "odd [1]"  # glob characters in a folder name are no pattern
  odd.mkdir()
  Image.fromarray(images[0, ..., 0]).save(odd / "b.png")
  assert read_images(str(odd), (28, 28, 1))[1] == ["b.png"]
  assert score_lib.heatmap_name("d1/x.png") == "heatmaps/d1/x.png.png"


def test_read_images_pixel_modes(tmp_path):
  gray = pixels(1)[0, ..., 0]
  Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "gray_rgb.png")  # grayscale-looking RGB: accepted
  Image.fromarray(gray).convert("1").save(tmp_path / "bilevel.png")
  x, _ = read_images(str(tmp_path / "gray_rgb.png"), (28, 28, 1))
  np.testing.assert_allclose(x[0, ..., 0], gray / 127.5 - 1, atol=1e-6)
  assert read_images(str(tmp_path / "bilevel.png"), (28, 28, 1))[0].shape == (1, 28, 28, 1)
  assert read_images(str(tmp_path / "gray_rgb.png"), (28, 28, 3))[0].shape == (1, 28, 28, 3)


def test_read_images_rejects_bad_input(tmp_path):
  np.save(tmp_path / "wrong.npy", np.zeros((2, 32, 32), np.uint8))
  np.save(tmp_path / "range.npy", np.full((2, 28, 28), 3.0, np.float32))
  np.save(tmp_path / "scalar.npy", np.float32(0.5))
  np.save(tmp_path / "one_image.npy", np.zeros((28, 28), np.uint8))
  np.save(tmp_path / "bool.npy", np.zeros((2, 28, 28), bool))
  nan = np.zeros((4, 28, 28), np.float32)
  nan[2, 3, 4] = np.nan
  np.save(tmp_path / "nan.npy", nan)
  np.savez(tmp_path / "none.npz")
  np.savez(tmp_path / "two.npz", x=np.zeros((2, 28, 28), np.uint8), y=np.zeros(2))
  (tmp_path / "broken.png").write_bytes(b"not a png")
  np.savez(tmp_path / "full.npz", x=np.zeros((2, 28, 28), np.uint8))
  (tmp_path / "cut.npz").write_bytes((tmp_path / "full.npz").read_bytes()[:200])
  gray = pixels(1)[0, ..., 0]
  colour = np.stack([gray, 255 - gray, gray], -1)
  Image.fromarray(colour).save(tmp_path / "colour.png")
  Image.fromarray(gray).save(tmp_path / "gray.png")
  Image.fromarray(np.dstack([colour, np.full_like(gray, 128)])).save(tmp_path / "alpha.png")
  Image.fromarray(gray.astype(np.uint16) * 256).save(tmp_path / "deep.png")  # 16-bit
  Image.fromarray(np.zeros((28, 30), np.uint8)).save(tmp_path / "wide.png")
  (tmp_path / "with_folder" / "sub.png").mkdir(parents=True)  # a folder named like a picture
  (tmp_path / "empty").mkdir()
  os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
  cases = [("wrong.npy", r"shape \(2, 32, 32\)"), ("range.npy", r"\[-1, 1\]"),
           ("scalar.npy", "a single value"), ("one_image.npy", r"shape \(28, 28\).*x\[None\]"),
           ("bool.npy", "dtype bool"), ("nan.npy", "image 2 .*NaN"),
           ("none.npz", "holds no arrays"), ("two.npz", r"holds 2 arrays \(x, y\)"),
           ("broken.png", "not a readable image"), ("cut.npz", "not a readable NumPy"),
           ("nothing", "does not exist"), ("nothing*.png", "matches no files"), ("empty", "no PNG/JPEG images in"),
           ("colour.png", "colour image .*grayscale"), ("alpha.png", "transparent"),
           ("deep.png", "8-bit"), ("wide.png", "30x28 pixels but the model expects 28x28"),
           ("with_folder", r"sub.png is a folder, not a picture"),
           ("dangling.png", r"cannot read .*dangling.png \(No such file or directory\)")]
  for source, message in cases:
    with pytest.raises(AnoganError, match=message):
      read_images(str(tmp_path / source), (28, 28, 1))
  with pytest.raises(AnoganError, match="grayscale image .*colour"):
    read_images(str(tmp_path / "gray.png"), (28, 28, 3))


def test_output_checks(tmp_path, monkeypatch):
  (tmp_path / "file").write_text("x\n")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "heatmaps").write_text("x\n")
  for output, message in ((tmp_path / "file", r"--output .*file is a file, not a folder"),
                          (tmp_path / "file" / "sub", r"cannot create --output .*: .*file is a file, not a folder"),
                          (tmp_path / "out", r"heatmaps is a file, not a folder")):
    with pytest.raises(AnoganError, match=message):
      score_lib.check_output(str(output), ["heatmaps/a.png.png"])
  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(score_lib.tempfile, "TemporaryFile", refuse)  # as a read-only folder does (root writes anywhere)
  with pytest.raises(AnoganError, match=r"cannot write to --output .*new \(Permission denied\)"):
    score_lib.check_writable(str(tmp_path / "new"), ["heatmaps/a.png.png"])
  assert not os.path.exists(tmp_path / "new")  # the checks create nothing
