import csv
import os

import numpy as np
import pytest
from conftest import run_command, synthetic_images
from PIL import Image
from test_train import tiny_data

from anogan_tf import AnoganError, Config, score_lib, train_lib
from anogan_tf.data import folder as folder_data
from anogan_tf.score_lib import read_images
from anogan_tf.visualization import plots


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


def colour_pictures(folder, images, size=32):
  """Colour (R, G, B differ) `size` x `size` PNGs img<i>.png of uint8 images (n, 28, 28, 1)."""
  folder.mkdir()
  for i, image in enumerate(images):
    gray = Image.fromarray(image[..., 0]).resize((size, size))
    g = np.asarray(gray)
    Image.fromarray(np.stack([g, g // 2, 255 - g], -1)).save(folder / f"img{i}.png")


@pytest.mark.slow
def test_score_a_folder_of_pngs_and_an_npy(workdir, tmp_path):
  # 32x32 colour pictures, resized as training resizes them (--resize: accepted, no effect) and
  # turned gray by --grayscale, and the same pixels as an .npy array: the same scores.
  folder = tmp_path / "pngs"
  colour_pictures(folder, pixels(3))
  converted, _ = read_images(str(folder), (28, 28, 1), resize=True, grayscale=True)
  np.save(tmp_path / "batch.npy", converted)
  for source, out, extra in ((str(folder), tmp_path / "out_png", ["--resize", "--grayscale", "--top=2"]),
                             (str(tmp_path / "batch.npy"), tmp_path / "out_npy", ["--top=0"])):
    result = run_command("score", f"--workdir={workdir}", f"--input={source}", f"--output={out}", *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_csv(out / "scores.csv")
    assert list(rows[0]) == ["file", "score", "is_anomaly", "residual", "discrimination", "report"]
    assert len(rows) == 3 and all(float(r["score"]) > 0 for r in rows)
    assert sorted(os.listdir(out / "reports")) == sorted(os.path.basename(r["report"]) for r in rows)
    assert all(os.path.isfile(out / r["report"]) for r in rows)
    # trained with --val_fraction=0: no threshold, said in one line; is_anomaly left empty
    assert result.stdout.splitlines()[0].startswith(f"no threshold: {workdir} was trained with --val_fraction=0")
    assert {r["is_anomaly"] for r in rows} == {""}
  assert [r["file"] for r in read_csv(tmp_path / "out_png" / "scores.csv")] == ["img0.png", "img1.png", "img2.png"]
  assert [r["report"] for r in read_csv(tmp_path / "out_npy" / "scores.csv")] == [f"reports/{i}.png" for i in range(3)]
  assert os.path.isfile(tmp_path / "out_png" / "top.png") and not os.path.exists(tmp_path / "out_npy" / "top.png")
  png_scores = [float(r["score"]) for r in read_csv(tmp_path / "out_png" / "scores.csv")]
  npy_scores = [float(r["score"]) for r in read_csv(tmp_path / "out_npy" / "scores.csv")]
  np.testing.assert_allclose(png_scores, npy_scores, rtol=1e-5)  # same pixels, same seed, same scores


@pytest.mark.slow
def test_reports_top_gallery_and_one_colour_scale(workdir, tmp_path, monkeypatch):
  from anogan_tf import models
  from anogan_tf.engine.workdir import load_networks
  config = Config.from_flagfile_text(open(os.path.join(workdir, "flags.txt")).read())
  images = pixels(5, seed=3)
  np.save(tmp_path / "x.npy", images)
  drawn = {}
  for name in ("score_reports", "top_gallery"):
    original = getattr(plots, name)
    def spy(*args, _original=original, _name=name, **kwargs):
      drawn[_name] = (args, kwargs)
      return _original(*args, **kwargs)
    monkeypatch.setattr(plots, name, spy)
  scored = score_lib.score_images(config, workdir, str(tmp_path / "x.npy"), str(tmp_path / "out"), progress=False,
                                  top=3)
  # --top: the 3 highest scores, highest first
  order = np.argsort(-scored.score, kind="stable")
  assert scored.top == [scored.files[i] for i in order[:3]]
  assert drawn["top_gallery"][0][2][0].startswith(f"1. {scored.files[order[0]]}\n")  # its first title
  assert os.path.getsize(tmp_path / "out" / "top.png") > 0
  # a report per image, at the readable size, each showing its own image
  expected = (round(plots.REPORT_INCHES[0] * plots.REPORT_DPI), round(plots.REPORT_INCHES[1] * plots.REPORT_DPI))
  arrays = []
  for report in scored.reports:
    with Image.open(tmp_path / "out" / report) as picture:
      assert picture.size == expected and picture.size[0] >= 800, picture.size
      arrays.append(np.asarray(picture.convert("RGB")))
  height, width = arrays[0].shape[:2]
  panels = [(0.05, 0.25), (0.34, 0.53), (0.62, 0.82)]  # inside the query, reconstruction, overlay panels
  for a in arrays[1:]:  # below the titles, each panel shows this report's own image
    for left, right in panels:
      region = (slice(int(0.3 * height), height), slice(int(left * width), int(right * width)))
      assert np.abs(a[region].astype(int) - arrays[0][region]).sum() > 0, (left, right)
  # one colour scale for the run: the largest residual of all its images, in every figure
  networks = load_networks(workdir, models.family(config.model), config)
  residual_maps = models.family(config.model).make_scorer(config, networks).score(images / 127.5 - 1).residual_map
  vmax = residual_maps.mean(axis=-1).max()
  assert drawn["score_reports"][0][5] == pytest.approx(vmax, rel=1e-6)
  assert drawn["top_gallery"][0][4] == pytest.approx(vmax, rel=1e-6)
  assert drawn["top_gallery"][0][5] == 5  # the colour bar names the run's 5 images
  # AnoGAN's residual is |x - G(z*)|, and the figures say so
  assert drawn["score_reports"][0][6] is True and drawn["top_gallery"][1]["residual_is_error"] is True

  # --top=0: no gallery, and a previous run's top.png is not left beside other images' scores
  score_lib.score_images(config, workdir, str(tmp_path / "x.npy"), str(tmp_path / "out"), progress=False, top=0)
  assert not os.path.exists(tmp_path / "out" / "top.png")
  with pytest.raises(AnoganError, match="--top=-1 is below 0"):
    score_lib.score_images(config, workdir, str(tmp_path / "x.npy"), str(tmp_path / "out"), progress=False, top=-1)


@pytest.mark.parametrize("residual_is_error", [True, False])
def test_figures_name_the_map_a_family_gives(residual_is_error, tmp_path, monkeypatch):
  """A family whose map is not a residual (Scorer.residual_is_error False: DRAEM's segmentation)
  is not labelled |query - reconstruction|, in the reports, the top gallery and evaluate's gallery."""
  import matplotlib.axes
  import matplotlib.colorbar
  labels = []
  for cls, method in ((matplotlib.colorbar.Colorbar, "set_label"), (matplotlib.axes.Axes, "set_title"),
                      (matplotlib.axes.Axes, "set_ylabel")):
    original = getattr(cls, method)
    def spy(self, text, *args, _original=original, **kwargs):
      labels.append(str(text))
      return _original(self, text, *args, **kwargs)
    monkeypatch.setattr(cls, method, spy)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
  maps = np.abs(x)
  plots.score_reports(x, x, maps, ["a", "b"], [str(tmp_path / "a.png"), str(tmp_path / "b.png")], 1.0,
                      residual_is_error)
  plots.top_gallery(x, maps, ["a", "b"], str(tmp_path / "top.png"), 1.0, 2, residual_is_error=residual_is_error)
  plots.gallery(x, x, maps, ["a", "b"], str(tmp_path / "gallery.png"), residual_is_error=residual_is_error)
  said = "\n".join(labels)
  assert ("|query - reconstruction|" in said) == residual_is_error, said
  assert ("anomaly map" in said) == (not residual_is_error), said
  assert ("residual" in said) == residual_is_error, said


def test_pictures_of_any_size_are_read_as_training_reads_them(tmp_path):
  folder = tmp_path / "colour"
  colour_pictures(folder, pixels(2))  # 32x32 colour pictures for 28x28 models
  with pytest.raises(AnoganError, match=r"img0.png is a colour image .*; pass --grayscale to convert it"):
    read_images(str(folder), (28, 28, 1))
  for shape, grayscale in (((28, 28, 1), True), ((28, 28, 3), False)):  # a colour model keeps the colour
    for resize in (False, True):  # --resize: accepted, no effect
      x, names = read_images(str(folder), shape, resize=resize, grayscale=grayscale)
      # training's and evaluate's reader of a folder (folder_data.ImageFiles): the same pixels
      np.testing.assert_array_equal(x, folder_data.ImageFiles(tuple(str(folder / n) for n in names), shape).read())
      assert x.shape == (2,) + shape
  assert np.abs(x[..., 0] - x[..., 2]).max() > 0.5
  with pytest.raises(AnoganError, match="--grayscale converts pictures for a 1-channel model.*drop --grayscale"):
    read_images(str(folder), (28, 28, 3), grayscale=True)
  # Arrays must have the model's size (with or without --resize); --grayscale turns colour ones gray (ITU-R 601 luma).
  rgb = np.stack([np.asarray(Image.open(folder / n).convert("RGB")) for n in names])
  np.save(tmp_path / "rgb32.npy", rgb)
  for resize in (False, True):
    with pytest.raises(AnoganError, match=r"shape \(2, 32, 32, 3\) but the model expects \(n, 28, 28, 1\) .*; store "
                                          "images of that shape .*pictures of any size are resized"):
      read_images(str(tmp_path / "rgb32.npy"), (28, 28, 1), resize=resize, grayscale=True)
  np.save(tmp_path / "rgb.npy", rgb[:, 2:30, 2:30])
  with pytest.raises(AnoganError, match=r"shape \(2, 28, 28, 3\) .*; pass --grayscale to convert them"):
    read_images(str(tmp_path / "rgb.npy"), (28, 28, 1))
  from_array, _ = read_images(str(tmp_path / "rgb.npy"), (28, 28, 1), grayscale=True)
  luma = (rgb[:, 2:30, 2:30].astype(np.float32) / 127.5 - 1) @ np.array([0.299, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(from_array[..., 0], luma, atol=1e-6)
  # Flags that are not needed change nothing.
  same = pixels(2)
  np.save(tmp_path / "same.npy", same)
  np.testing.assert_array_equal(read_images(str(tmp_path / "same.npy"), (28, 28, 1), resize=True, grayscale=True)[0],
                                read_images(str(tmp_path / "same.npy"), (28, 28, 1))[0])


def test_names_are_unique_relative_paths(tmp_path):
  """a.png and a.jpg, or x.png in two folders of a glob, keep apart (each gets its own report)."""
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
  assert score_lib.report_name("d1/x.png") == "reports/d1/x.png.png"


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
  cases = [("wrong.npy", r"shape \(2, 32, 32\) .*; store images of that shape"), ("range.npy", r"\[-1, 1\]"),
           ("scalar.npy", "a single value"), ("one_image.npy", r"shape \(28, 28\).*x\[None\]"),
           ("bool.npy", "dtype bool"), ("nan.npy", "image 2 .*NaN"),
           ("none.npz", "holds no arrays"), ("two.npz", r"holds 2 arrays \(x, y\)"),
           ("broken.png", "not a readable image"), ("cut.npz", "not a readable NumPy"),
           ("nothing", "does not exist"), ("nothing*.png", "matches no files"), ("empty", "no PNG/JPEG images in"),
           ("colour.png", "colour image .*grayscale.*pass --grayscale"), ("alpha.png", "transparent"),
           ("deep.png", "8-bit"),
           ("with_folder", r"sub.png is a folder, not a picture"),
           ("dangling.png", r"cannot read .*dangling.png \(No such file or directory\)")]
  for source, message in cases:
    with pytest.raises(AnoganError, match=message):
      read_images(str(tmp_path / source), (28, 28, 1))
  with pytest.raises(AnoganError, match="grayscale image .*colour"):
    read_images(str(tmp_path / "gray.png"), (28, 28, 3))
  assert read_images(str(tmp_path / "wide.png"), (28, 28, 1))[0].shape == (1, 28, 28, 1)  # another size: resized
  Image.fromarray(colour).convert("CMYK").save(tmp_path / "cmyk.jpg")  # training's decoder reads it as colour only
  with pytest.raises(AnoganError, match="cmyk.jpg is a CMYK picture, which the decoder cannot turn gray"):
    read_images(str(tmp_path / "cmyk.jpg"), (28, 28, 1), grayscale=True)
  assert read_images(str(tmp_path / "cmyk.jpg"), (28, 28, 3))[0].shape == (1, 28, 28, 3)


def test_output_checks(tmp_path, monkeypatch):
  (tmp_path / "file").write_text("x\n")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "reports").write_text("x\n")
  (tmp_path / "gallery" / "top.png").mkdir(parents=True)
  for output, message in ((tmp_path / "file", r"--output .*file is a file, not a folder"),
                          (tmp_path / "file" / "sub", r"cannot create --output .*: .*file is a file, not a folder"),
                          (tmp_path / "out", r"reports is a file, not a folder"),
                          (tmp_path / "gallery", r"top.png is a folder, where the output file goes")):
    with pytest.raises(AnoganError, match=message):
      score_lib.check_output(str(output), ["reports/a.png.png", "top.png"])
  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(score_lib.tempfile, "TemporaryFile", refuse)  # as a read-only folder does (root writes anywhere)
  with pytest.raises(AnoganError, match=r"cannot write to --output .*new \(Permission denied\)"):
    score_lib.check_writable(str(tmp_path / "new"), ["reports/a.png.png"])
  assert not os.path.exists(tmp_path / "new")  # the checks create nothing
