"""The validation split: held-out normals and other-class train images, disjoint from training."""

import numpy as np
import pytest

from anogan_tf import AnoganError, Config
from anogan_tf.data import load_arrays, load_one_class, validation_split


def test_validation_split_holds_out_normals_and_draws_other_classes():
  y = np.repeat(np.arange(10), 50)
  kept, held, anomalies = validation_split(y, np.array([3]), 0.2, seed=5)
  assert len(held) == 10 and len(kept) == 40 and len(anomalies) == 10
  assert set(y[kept]) == {3} and set(y[held]) == {3} and 3 not in set(y[anomalies])
  assert not set(kept) & set(held)  # held-out images are never trained on
  again = validation_split(y, np.array([3]), 0.2, seed=5)
  other_seed = validation_split(y, np.array([3]), 0.2, seed=6)
  assert all(np.array_equal(a, b) for a, b in zip((kept, held, anomalies), again))
  assert not np.array_equal(held, other_seed[1])
  assert validation_split(y, np.array([3]), 0.0, seed=5)[1].size == 0


def test_val_evaluation_set_comes_from_the_train_split(mnist_dir):
  config = Config(normal_classes=(2,), val_fraction=0.1, eval_split="val", seed=1)
  data = load_one_class(config)
  (x_train, y_train), _ = load_arrays("mnist", mnist_dir)
  n_normal = int(np.sum(y_train == 2))
  assert data.split == "val"
  assert len(data.x_train) == n_normal - int(round(0.1 * n_normal))
  assert np.sum(data.y_test == 0) == int(round(0.1 * n_normal)) == np.sum(data.y_test == 1)
  assert np.array_equal(data.classes_test, y_train[data.test_indices])
  assert np.array_equal(data.y_test, (data.classes_test != 2).astype(int))
  # The pixels are the train-split images at those positions, and none of them is trained on.
  np.testing.assert_allclose(data.x_test, x_train[data.test_indices][..., None] / 127.5 - 1.0, atol=1e-6)
  trained = {arr.tobytes() for arr in data.x_train}
  assert not any(arr.tobytes() in trained for arr in data.x_test[data.y_test == 0])
  # The test split is untouched by --val_fraction.
  test = load_one_class(config.replace(eval_split="test"))
  assert test.split == "test" and len(test.y_test) == 10000


def test_eval_split_val_needs_a_held_out_fraction():
  with pytest.raises(AnoganError, match="--val_fraction"):
    Config(eval_split="val")
  with pytest.raises(AnoganError, match="outside"):
    Config(val_fraction=1.0)


def test_a_data_file_is_read_once_per_version_and_its_arrays_cannot_be_changed(tmp_path):
  # A process that trains then evaluates decompresses the .npz once; a file written again (another
  # version at the same path: a user's fix, a test's damaged copy) is read again, never served stale.
  def write(value):
    np.savez_compressed(tmp_path / "mnist.npz", x_train=np.full((4, 28, 28), value, np.uint8), y_train=np.arange(4),
                        x_test=np.full((2, 28, 28), value, np.uint8), y_test=np.arange(2))
  write(7)
  (x_train, _), (x_test, _) = load_arrays("mnist", str(tmp_path))
  assert x_train[0, 0, 0] == 7 and x_test[0, 0, 0] == 7
  with pytest.raises(ValueError, match="read-only"):
    x_train[0, 0, 0] = 9  # shared with the next load: no caller may change it
  assert load_arrays("mnist", str(tmp_path))[0][0] is x_train  # the same version: not read again
  (tmp_path / "mnist.npz").unlink()
  write(200)
  (x_train, _), (x_test, _) = load_arrays("mnist", str(tmp_path))
  assert x_train[0, 0, 0] == 200 and x_test[0, 0, 0] == 200
