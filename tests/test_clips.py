"""Clip datasets: the Moving MNIST generator (seeded; its frame labels mark where the motion or the
digit really changes; digits stay inside the frame) and the frames folder (--dataset=frames: its
layouts, its pieces and labels, and a one-line error for each kind of bad input)."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from anogan_tf import AnoganError, Config
from anogan_tf.data import frames, load_one_class, moving_mnist

SIDE = 6  # tiny square "digits" on 24 x 24 frames, 8 frames a clip: fast and easy to locate
SIZE, LENGTH = 24, 8


def digits(value, n=3):
  return np.full((n, SIDE, SIDE), value, np.uint8)


def plan(kind, seed):
  return moving_mnist.plan_clip(np.random.default_rng(seed), digits(100), digits(255), LENGTH, kind, SIZE)


def test_the_same_seed_gives_the_same_clips_and_another_seed_others():
  a = moving_mnist.make_clips(3, 4, 2, digits(100), digits(255), LENGTH, SIZE)
  b = moving_mnist.make_clips(3, 4, 2, digits(100), digits(255), LENGTH, SIZE)
  c = moving_mnist.make_clips(4, 4, 2, digits(100), digits(255), LENGTH, SIZE)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  assert not np.array_equal(a[0], c[0])
  assert list(a[2]) == ["normal"] * 4 + [kind for kind in moving_mnist.KINDS for _ in range(2)]
  assert a[1][:4].sum() == 0 and all(row.any() for row in a[1][4:])  # a clip is abnormal iff a frame is


@pytest.mark.parametrize("seed", range(12))
def test_a_stopped_digit_stands_still_from_its_first_labelled_frame(seed):
  frames_, labels, drawn = plan("stop", seed)
  t0, path = drawn["t0"], drawn["paths"][drawn["changed"]]
  assert labels.tolist() == [0] * t0 + [1] * (LENGTH - t0)
  assert np.all(path[t0:] == path[t0 - 1])  # from the labelled frame on: where it was the frame before
  assert np.any(path[t0 - 1] != path[t0 - 2])  # and it moved until then
  other = drawn["paths"][1 - drawn["changed"]]
  assert np.all(np.any(np.diff(other, axis=0) != 0, axis=1))  # the other digit never stops


@pytest.mark.parametrize("seed", range(12))
def test_a_fast_digit_moves_three_times_as_far_per_frame_from_its_labelled_frame(seed):
  _, labels, drawn = plan("fast", seed)
  t0, path = drawn["t0"], drawn["paths"][drawn["changed"]]
  assert labels.tolist() == [0] * t0 + [1] * (LENGTH - t0)
  room = SIZE - SIDE
  step = moving_mnist.STEP * room
  # a bounce folds a step back at the edge, so a step is at most its length; without one it is exact
  steps = np.hypot(*np.diff(path, axis=0).T)
  assert np.all(steps[:t0 - 1] <= step + 1e-9) and np.all(steps[t0 - 1:] <= moving_mnist.FAST * step + 1e-9)
  unbounced = [t for t in range(t0, LENGTH) if np.all((path[t] > 0) & (path[t] < room))
               and np.all((path[t - 1] > 0) & (path[t - 1] < room))]
  for t in unbounced:
    travelled = np.hypot(*(path[t] - path[t - 1]))
    assert travelled == pytest.approx(moving_mnist.FAST * step) or travelled < moving_mnist.FAST * step


@pytest.mark.parametrize("seed", range(12))
def test_a_jump_is_labelled_on_its_one_discontinuous_frame(seed):
  _, labels, drawn = plan("jump", seed)
  t0, path = drawn["t0"], drawn["paths"][drawn["changed"]]
  assert labels.tolist() == [int(t == t0) for t in range(LENGTH)]
  far = min(moving_mnist.JUMP_MIN, 0.5 * (SIZE - SIDE))
  assert np.hypot(*(path[t0] - path[t0 - 1])) >= far
  assert np.all(np.hypot(*np.diff(path[:t0], axis=0).T) <= moving_mnist.STEP * (SIZE - SIDE) + 1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_a_new_digit_appears_from_its_labelled_frame(seed):
  clip, labels, drawn = plan("new_digit", seed)
  t0 = drawn["t0"]
  assert labels.tolist() == [0] * t0 + [1] * (LENGTH - t0)
  assert clip[:t0].max() == 100 and np.all(clip[t0:].max(axis=(1, 2)) == 255)  # only the new class is 255


@pytest.mark.parametrize("kind", ("normal",) + moving_mnist.KINDS)
def test_digits_stay_wholly_inside_the_frame(kind):
  for seed in range(20):
    clip, _, drawn = plan(kind, seed)
    assert drawn["paths"].min() >= 0 and drawn["paths"].max() <= SIZE - SIDE
    # both squares drawn whole: each frame holds at least one whole square's ink and at most two
    ink = (clip > 0).sum(axis=(1, 2))
    assert np.all(ink >= SIDE * SIDE) and np.all(ink <= 2 * SIDE * SIDE)


def test_moving_mnist_loads_seeded_clips_with_frame_labels(mnist_dir):
  config = Config(model="convlstm_ae", dataset="moving_mnist", normal_classes=(0, 1, 2, 3, 4, 5, 6, 7), clip_length=6,
                  clip_window=6, image_size=32, train_examples=10, val_fraction=0.2, test_examples=20)
  data = load_one_class(config)
  assert data.x_train.shape == (10, 6, 32, 32, 1) and data.x_val.shape[1:] == (6, 32, 32, 1)
  assert data.x_test.shape == (20, 6, 32, 32, 1) and data.frame_labels.shape == (20, 6)
  np.testing.assert_array_equal(data.y_test, data.frame_labels.max(axis=1))
  assert set(data.classes_test[data.y_test == 0]) == {"normal"}
  assert -1 <= data.x_train.min() and data.x_train.max() <= 1
  again = load_one_class(config)
  np.testing.assert_array_equal(again.x_train, data.x_train)
  other = load_one_class(config.replace(seed=1))
  assert not np.array_equal(other.x_train, data.x_train)
  np.testing.assert_array_equal(load_one_class(config.replace(seed=1, test_examples=0)).x_test[other.test_indices],
                                other.x_test)  # the test clips do not depend on --seed; only the subset does
  assert not load_one_class(config, read_test=False).x_test.size
  with pytest.raises(AnoganError, match="no digit can be new"):
    load_one_class(config.replace(normal_classes=tuple(range(10))))


# --- the frames folder

def write_frame(path, size=(20, 24), value=0, mode="L"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  array = np.full(size[::-1] + ((3,) if mode == "RGB" else ()), value, np.uint8)
  Image.fromarray(array, mode).save(path)


def write_clip(folder, n, ext="png", size=(20, 24), start=0, mode="L"):
  for i in range(n):
    write_frame(os.path.join(folder, f"{start + i:03d}.{ext}"), size, 10 * i, mode)


@pytest.fixture
def clips_root(tmp_path):
  root = tmp_path / "clips"
  write_clip(str(root / "train" / "a"), 8)
  write_clip(str(root / "train" / "b"), 10)  # 4 + 4 + a last piece ending at frame 10, overlapping
  write_clip(str(root / "test" / "c"), 8)
  (root / "test" / "c.csv").write_text("frame,label\n" + "".join(f"{i:03d}.png,{int(i >= 5)}\n" for i in range(8)))
  write_clip(str(root / "test" / "d"), 4, ext="jpg")
  (root / "test" / "d.csv").write_text("0\n0\n0\n0\n")
  return str(root)


def frames_config(root, **changes):
  return Config(**{**dict(model="convlstm_ae", dataset="frames", data_dir=root, channels=1, image_size=32,
                          clip_length=4, clip_window=4), **changes})


def test_a_frames_folder_loads_as_pieces_of_clip_length_with_frame_labels(clips_root):
  data = load_one_class(frames_config(clips_root))
  assert data.x_train.shape == (2 + 3, 4, 32, 32, 1)
  np.testing.assert_allclose(data.x_train[4, :, 0, 0, 0], (np.arange(6, 10) * 10) / 127.5 - 1, atol=1e-5)
  assert data.names == ["test/c[0:4]", "test/c[4:8]", "test/d[0:4]"]
  assert data.frame_labels.tolist() == [[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]]
  assert data.y_test.tolist() == [0, 1, 0]
  assert frames.resolve_image_shape(frames_config(clips_root, channels=0, image_size=0)).image_shape == (64, 64, 1)


def test_channels_0_takes_the_training_frames_channels_and_refuses_a_mix(clips_root):
  write_clip(os.path.join(clips_root, "train", "e"), 4, mode="RGB")
  with pytest.raises(AnoganError, match=r"the training frames mix grayscale \(.*train/a/000.png\) and colour "
                                        r"\(.*train/e/000.png\).*--channels=1") as error:
    frames.resolve_image_shape(frames_config(clips_root, channels=0))
  assert "\n" not in str(error.value)
  assert frames.resolve_image_shape(frames_config(clips_root, channels=3)).image_shape == (32, 32, 3)
  for clip in ("a", "b"):
    shutil.rmtree(os.path.join(clips_root, "train", clip))
  assert frames.resolve_image_shape(frames_config(clips_root, channels=0)).image_shape == (32, 32, 3)


def test_the_ucsd_layout_reads_tif_frames_and_labels_frames_by_their_masks(tmp_path):
  root = tmp_path / "ped2"
  write_clip(str(root / "Train" / "Train001"), 4, ext="tif")
  write_clip(str(root / "Test" / "Test001"), 4, ext="tif")
  for i in range(4):
    write_frame(str(root / "Test" / "Test001_gt" / f"{i:03d}.bmp"), value=255 * (i >= 2))
  data = load_one_class(frames_config(str(root)))
  assert data.x_train.shape == (1, 4, 32, 32, 1) and data.frame_labels.tolist() == [[0, 0, 1, 1]]
  assert data.names == ["Test/Test001[0:4]"]


@pytest.mark.parametrize("bad, message", [
    ("short", r"has 3 frames, fewer than --clip_length=4"),
    ("empty", r"no frames in .*train/e"),
    ("unreadable", r"b/001.png is not a readable image"),
    ("sizes", r"b/002.png is 30x24 pixels but .*b/000.png is 20x24; the frames of a clip must share one size"),
    ("no labels", r"test clip .*test/c has no frame labels; add .*c.csv"),
    ("label count", r"c.csv gives 7 frame labels for the 8 frames"),
    ("label value", r"c.csv line 3 holds 'x', not a frame label"),
    ("no train", r"train is missing"),
])
def test_bad_frames_folders_fail_with_one_line_errors(clips_root, bad, message):
  root = clips_root
  if bad == "short":
    write_clip(os.path.join(root, "train", "e"), 3)
  elif bad == "empty":
    os.makedirs(os.path.join(root, "train", "e"))
  elif bad == "unreadable":
    with open(os.path.join(root, "train", "b", "001.png"), "wb") as f:
      f.write(b"not a picture")
  elif bad == "sizes":
    write_frame(os.path.join(root, "train", "b", "002.png"), size=(30, 24))
  elif bad == "no labels":
    os.remove(os.path.join(root, "test", "c.csv"))
  elif bad == "label count":
    with open(os.path.join(root, "test", "c.csv"), "w") as f:
      f.write("0\n" * 7)
  elif bad == "label value":
    with open(os.path.join(root, "test", "c.csv"), "w") as f:
      f.write("0\n0\nx\n" + "0\n" * 5)
  elif bad == "no train":
    os.rename(os.path.join(root, "train"), os.path.join(root, "elsewhere"))
  with pytest.raises(AnoganError, match=message) as error:
    load_one_class(frames_config(root))
  assert "\n" not in str(error.value)


# --- convlstm_ae end to end: frame-level metrics, score, export

def moving_blobs(n, seed):
  """(clips (n, 4, 32, 32, 1) of a blob moving right at 5 pixels a frame, their frame labels: 0)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:32, 0:32]
  clips = np.zeros((n, 4, 32, 32, 1), np.float32)
  for i in range(n):
    y, x = rng.uniform(8, 24), rng.uniform(4, 10)
    for t in range(4):
      clips[i, t, ..., 0] = np.where(np.hypot(yy - y, xx - x - 5 * t) < 5, 1.0, -1.0)
  return clips, np.zeros((n, 4), np.int64)


def test_the_convlstm_stack_hands_the_decoder_features_of_unit_scale_from_the_start():
  """Three stacked ConvLSTM2D outputs (o * tanh(c), each starting small) shrink a frame's features to a
  thousandth by the decoder unless normalised; at that scale the untrained network learned a blurred
  blob for hundreds of steps. What reaches the decoder at initialisation must be of order one."""
  from anogan_tf.models.convlstm_ae import SpatioTemporalAutoencoder
  model = SpatioTemporalAutoencoder(frame_shape=(32, 32, 1), filters=(32, 32), strides=(4, 2))
  seen, first = [], model.decoder_layers[0]

  def spy(h):
    seen.append(np.asarray(h))
    return first(h)

  model.decoder_layers[0] = spy
  model(moving_blobs(4, seed=1)[0])
  assert seen[0].std() > 0.1, seen[0].std()


@pytest.mark.slow
def test_convlstm_ae_reports_frame_auroc_and_exports_its_clip_and_frame_scores(tmp_path):
  import tensorflow as tf

  from anogan_tf import evaluate_lib, export_lib, models, train_lib
  from anogan_tf.data import OneClassData
  from anogan_tf.engine.workdir import load_scorer
  config = Config(model="convlstm_ae", dataset="moving_mnist", image_size=32, clip_length=4, clip_window=3,
                  e_filters=(4, 8), e_strides=(4, 2), convlstm_filters=(4, 4, 4), batch_size=8, lr=0.03, epochs=2,
                  lr_decay_epoch=0, map_batch_size=8, val_fraction=0.1)
  normal, normal_labels = moving_blobs(48, seed=1)
  test_normal, test_normal_labels = moving_blobs(6, seed=2)
  inverted = -moving_blobs(6, seed=3)[0]  # every frame abnormal
  x_test = np.concatenate([test_normal, inverted])
  frame_labels = np.concatenate([test_normal_labels, np.ones((6, 4), np.int64)])
  data = OneClassData(x_train=normal[:40], x_test=x_test, y_test=np.repeat([0, 1], 6),
                      classes_test=np.array(["normal"] * 6 + ["inverted"] * 6, object), test_indices=np.arange(12),
                      x_val=normal[40:], frame_labels=frame_labels)
  workdir = str(tmp_path / "run")
  train_lib.train(config, workdir, data=data, progress=False)
  metrics = evaluate_lib.evaluate(config, workdir, data=data, progress=False)
  assert metrics["n_frames"] == 48 and metrics["n_abnormal_frames"] == 24
  assert metrics["frame_auroc"] > 0.9 and set(metrics["frame_auroc_by_anomalous_class"]) == {"inverted"}
  scorer, _ = load_scorer(config, workdir, models.family("convlstm_ae"))
  result = scorer.score(x_test)
  assert result.residual_map.shape == x_test.shape and result.extras["frame_scores"].shape == (12, 4)
  np.testing.assert_allclose(result.score, result.extras["frame_scores"].mean(axis=1), rtol=1e-6)
  regularity = result.extras["regularity"]
  assert np.allclose(regularity.max(axis=1), 1) and np.allclose(regularity.min(axis=1), 0)
  export_lib.export(config, workdir, str(tmp_path / "saved"))
  served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"](images=tf.constant(x_test))
  np.testing.assert_allclose(served["score"].numpy(), result.score, rtol=1e-5)
  np.testing.assert_allclose(served["frame_scores"].numpy(), result.extras["frame_scores"], rtol=1e-5, atol=1e-4)
  assert served["residual_map"].shape == x_test.shape


def scores_by_strategy(folder):
  """{strategy: the scores of 8 clips}: the convlstm_ae trained an epoch on moving blobs and scored,
  under --strategy=default and under --strategy=mirrored. For a process with two logical CPUs:
  tests/test_distribute.py runs it in its own and checks that both give the same scores. One
  ConvLSTM2D layer: the stack builds and runs each of its layers alike, and the strategy sees only
  the network's variables and its steps (a further layer adds only tracing, most of it under
  mirrored)."""
  from anogan_tf import models, train_lib
  from anogan_tf.data import OneClassData
  from anogan_tf.engine import distribute
  from anogan_tf.engine.workdir import load_networks
  family = models.family("convlstm_ae")
  x, _ = moving_blobs(32, seed=1)
  data = OneClassData(x_train=x[:24], x_test=x[24:], y_test=np.arange(8) % 2, classes_test=np.arange(8) % 2,
                      test_indices=np.arange(8), x_val=x[:4])
  out = {}
  for strategy in ("default", "mirrored"):
    config = Config(model="convlstm_ae", dataset="moving_mnist", image_size=32, clip_length=4, clip_window=3,
                    e_filters=(4, 8), e_strides=(4, 2), convlstm_filters=(4,), batch_size=8, lr=0.03, epochs=1,
                    map_batch_size=4, strategy=strategy)
    workdir = os.path.join(folder, strategy)
    train_lib.train(config, workdir, data=data, progress=False)
    scorer, _ = distribute.make_scorer(family, config, lambda: load_networks(workdir, family, config))
    result = scorer.score(data.x_test)
    assert result.residual_map.shape == data.x_test.shape, result.residual_map.shape
    out[strategy] = result.score.tolist()
  return out


def test_a_clip_dataset_with_an_image_family_is_refused_when_the_settings_are_read():
  with pytest.raises(AnoganError, match=r"--model=ae takes images, but --dataset=moving_mnist holds clips; use "
                                        r"--model=convlstm_ae for clips"):
    Config(model="ae", dataset="moving_mnist")
  with pytest.raises(AnoganError, match=r"--model=convlstm_ae takes clips, but --dataset=mnist holds images"):
    Config(model="convlstm_ae", dataset="mnist")
  with pytest.raises(AnoganError, match=r"--clip_window=12 is longer than --clip_length=10"):
    Config(model="convlstm_ae", dataset="moving_mnist", clip_length=10, clip_window=12)
  with pytest.raises(AnoganError, match=r"--dataset=frames needs --data_dir=ROOT"):
    Config(model="convlstm_ae", dataset="frames")
