"""experiments/photo_example.py's folder (the README's score-report example): the same pictures from
the same seed, a folder the package reads as an MVTec AD dataset, and masks that mark exactly the
pasted patches. No training: the example's commands are those tests/test_your_own_images.py runs."""

import hashlib
import os
import sys

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

sys.path.insert(0, os.path.join(ROOT, "experiments"))

import photo_example  # noqa: E402

from anogan_tf.config import Config  # noqa: E402
from anogan_tf.data import folder as folder_data  # noqa: E402


def digest(root):
  files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
  return {f: hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest() for f in files}


def test_the_folder_is_rebuilt_identically_and_reads_as_an_mvtec_dataset(tmp_path):
  counts = photo_example.build_folder(str(tmp_path / "a"))
  assert counts == {"train/good": 400, "test/good": 40, "test/tiles": 40, "test/petals": 40}
  photo_example.build_folder(str(tmp_path / "b"))
  photo_example.build_folder(str(tmp_path / "c"), seed=1)
  assert digest(tmp_path / "a") == digest(tmp_path / "b")
  assert digest(tmp_path / "a") != digest(tmp_path / "c")

  config = Config(dataset="folder", data_dir=str(tmp_path / "a"), image_size=64, channels=3)
  data = folder_data.load_folder(folder_data.resolve_image_shape(config))
  assert len(data.x_train) == 400 and data.x_test.shape == (120, 64, 64, 3)
  assert sorted(set(data.classes_test)) == ["good", "petals", "tiles"]
  assert data.masks is not None and data.masks.shape[:3] == (120, 64, 64)


def test_each_mask_marks_the_pasted_square_and_nothing_else(tmp_path):
  root = tmp_path / "photos"
  photo_example.build_folder(str(root))
  low, high = photo_example.PATCH
  for defect in ("tiles", "petals"):
    for i in range(photo_example.N_DEFECT):
      mask = np.asarray(Image.open(root / "ground_truth" / defect / f"{i:03d}_mask.png")) > 0
      rows, cols = np.nonzero(mask)
      side = rows.max() - rows.min() + 1
      assert low <= side <= high and cols.max() - cols.min() + 1 == side and mask.sum() == side * side


def test_paste_changes_exactly_the_masked_square_to_a_patch_of_the_source():
  rng = np.random.default_rng(0)
  picture = np.zeros((photo_example.SIZE, photo_example.SIZE, 3), np.uint8)
  source = rng.integers(1, 256, (30, 40, 3), dtype=np.uint8)  # no zeros: every pasted pixel differs
  for _ in range(20):
    pasted, mask = photo_example.paste(picture, source, rng)
    changed = (pasted != picture).any(axis=-1)
    np.testing.assert_array_equal(changed, mask > 0)
    rows, cols = np.nonzero(mask)
    patch = pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    found = [(y, x) for y in range(source.shape[0] - patch.shape[0] + 1) for x in range(source.shape[1] - patch.shape[1] + 1)
             if np.array_equal(source[y:y + patch.shape[0], x:x + patch.shape[1]], patch)]
    assert found, "the pasted square is no patch of the source"


def test_reconstruction_ssim_compares_each_picture_with_its_reconstruction(tmp_path, monkeypatch):
  """The record's SSIM of good reconstructions: 1 where the workdir reconstructs every picture as it
  is, lower where it paints the picture's negative; the pictures read as training reads them."""
  from types import SimpleNamespace

  from anogan_tf import models
  from anogan_tf.cli import flags as anogan_flags
  from anogan_tf.engine import workdir as workdir_lib
  rng = np.random.default_rng(0)
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
  config = Config(model="ae", dataset="folder", data_dir=str(tmp_path), image_size=32, channels=3)
  monkeypatch.setattr(anogan_flags, "workdir_config", lambda workdir: config)
  monkeypatch.setattr(models, "family", lambda name: None)
  for paint, expected in ((lambda x: x, 1.0), (lambda x: -x, None)):
    scorer = SimpleNamespace(score=lambda x, paint=paint: SimpleNamespace(reconstruction=paint(x)))
    monkeypatch.setattr(workdir_lib, "load_scorer", lambda config, workdir, family, s=scorer: (s, {}))
    ssim = photo_example.reconstruction_ssim("unused", str(tmp_path))
    assert ssim["n"] == 3 and ssim["min"] <= ssim["mean"]
    if expected is not None:
      assert ssim["mean"] == pytest.approx(expected, abs=1e-4)
    else:
      assert ssim["mean"] < 0.5


def test_a_preset_trains_with_its_own_schedule():
  assert photo_example.train_flags() == photo_example.TRAIN_FLAGS
  flags = photo_example.train_flags("/p/pictures.flags")
  assert flags[0] == "--flagfile=/p/pictures.flags" and not any(f.startswith("--epochs") for f in flags)
