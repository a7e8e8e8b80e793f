"""Your own clips (--dataset=frames --data_dir=ROOT): folders of frame pictures.

  ROOT/train/<clip>/*.png|.jpg|.jpeg|.bmp|.tif   normal clips, one folder each, frames in name order
  ROOT/test/<clip>/*                             test clips
  ROOT/test/<clip>.csv                           the test clip's frame labels: one line per frame in
                                                 name order, 0 (normal) or 1 (abnormal), the last
                                                 comma-separated field of the line (a header line
                                                 that is not a number is skipped)

or the UCSD Anomaly Detection dataset's layout (Ped1, Ped2): ROOT/Train/Train001/*.tif, ROOT/Test/
Test001/*.tif with the masks of the abnormal pixels in ROOT/Test/Test001_gt/ (one per frame, in
name order; a frame is abnormal when its mask has a pixel set). A test clip needs labels in one of
these two forms.

Frames of any size and colour are read as --dataset=folder reads pictures (folder.read_image:
decoded to --channels, 0: that of the training frames; resized to --image_size square, 64 by
default; scaled to [-1, 1]); TIFF and BMP frames, which TensorFlow does not decode (TIFF) or not
in gray (BMP), through Pillow, then resized the same way. The frames of one clip must share one
size. Each clip is cut into examples of --clip_length frames: consecutive pieces, the last one
ending at the clip's last frame (so it may overlap the one before; its frames then count twice in
frame-level metrics). A clip shorter than --clip_length is an error. The test pieces are named
test/<clip>[first:end] (frame numbers in name order).
"""

from __future__ import annotations

import os
from typing import List, Sequence, Tuple

import numpy as np

import anogan_tf.data.folder as folder
from anogan_tf.config import Config
from anogan_tf.data.splits import OneClassData, test_subset, validation_split
from anogan_tf.errors import AnoganError

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PILLOW_ONLY = (".tif", ".tiff", ".bmp")  # TensorFlow decodes no TIFF, nor one-channel BMP
MASKS_SUFFIX = "_gt"  # UCSD's Test001_gt/ beside Test001/
LAYOUT = ("frames layout: train/<clip>/ and test/<clip>/ of frame pictures with test/<clip>.csv labels, or "
          "UCSD's Train/Train001/, Test/Test001/ + Test/Test001_gt/")


def split_folder(root: str, split: str) -> str:
  """ROOT/train or ROOT/test, or UCSD's ROOT/Train, ROOT/Test; an AnoganError when neither exists."""
  if not os.path.isdir(root):
    raise AnoganError(f"data folder {root} does not exist; --data_dir must name the folder holding train/ and test/ "
                      f"({LAYOUT})")
  for name in (split, split.capitalize()):
    if os.path.isdir(os.path.join(root, name)):
      return os.path.join(root, name)
  raise AnoganError(f"{os.path.join(root, split)} is missing; put one folder of frames per clip there ({LAYOUT})")


def clip_folders(root: str, split: str) -> List[str]:
  """The clip folders of a split, sorted by name (UCSD's *_gt mask folders left out)."""
  base = split_folder(root, split)
  names = sorted(n for n in os.listdir(base) if not n.startswith(".") and os.path.isdir(os.path.join(base, n))
                 and not n.endswith(MASKS_SUFFIX))
  if not names:
    raise AnoganError(f"{base} holds no clip folders; put each clip's frames in a folder of its own ({LAYOUT})")
  return [os.path.join(base, n) for n in names]


def frame_paths(clip: str) -> List[str]:
  """The frame pictures of a clip folder, sorted by name; an AnoganError when there are none."""
  paths = [os.path.join(clip, n) for n in sorted(os.listdir(clip)) if not n.startswith(".")
           and n.lower().endswith(FRAME_EXTENSIONS) and os.path.isfile(os.path.join(clip, n))]
  if not paths:
    raise AnoganError(f"no frames in {clip} (files ending in {', '.join(FRAME_EXTENSIONS)}); put the clip's "
                      "frames there or remove the folder")
  return paths


def _pillow_frame(path: str, shape: Sequence[int]) -> np.ndarray:
  """A picture Pillow reads (TIFF), decoded and resized as folder.decode does PNG and JPEG."""
  import tensorflow as tf
  from PIL import Image
  try:
    with Image.open(path) as image:
      pixels = np.asarray(image.convert("L" if shape[2] == 1 else "RGB"), np.float32)
  except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
    raise folder.unreadable_picture(path, e) from None
  pixels = pixels.reshape(pixels.shape[:2] + (shape[2],))
  resized = tf.image.resize(pixels, tuple(shape[:2]), antialias=True).numpy()
  return resized / 127.5 - 1.0


def frame_size(path: str) -> Tuple[Tuple[int, int], int]:
  """((height, width), channels) of a picture from its header, or an AnoganError naming it."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      return (image.height, image.width), 1 if image.mode in folder.GRAY_MODES else 3
  except Exception as e:
    raise folder.unreadable_picture(path, e) from None


def read_clip(paths: Sequence[str], shape: Sequence[int]) -> np.ndarray:
  """A clip's frames as float32 (T, h, w, c) in [-1, 1]; an AnoganError for a frame that does not
  read or whose size differs from the clip's first frame."""
  first = frame_size(paths[0])[0]
  frames = []
  for path in paths:
    size = frame_size(path)[0]
    if size != first:
      raise AnoganError(f"{path} is {size[1]}x{size[0]} pixels but {paths[0]} is {first[1]}x{first[0]}; the frames "
                        "of a clip must share one size: resize them")
    read = _pillow_frame if path.lower().endswith(PILLOW_ONLY) else folder.read_image
    frames.append(read(path, shape))
  return np.stack(frames).astype(np.float32)


def pieces(n_frames: int, length: int, where: str) -> List[int]:
  """Starts of the examples of `length` frames cut from a clip of n_frames: every `length`
  frames, and one ending at the last frame when they do not divide evenly."""
  if n_frames < length:
    raise AnoganError(f"{where} has {n_frames} frames, fewer than --clip_length={length}; use a smaller "
                      "--clip_length or leave the clip out")
  starts = list(range(0, n_frames - length + 1, length))
  if starts[-1] + length < n_frames:
    starts.append(n_frames - length)
  return starts


def frame_labels(clip: str, n_frames: int) -> np.ndarray:
  """(n_frames,) int64 labels of a test clip: from <clip>.csv, or from UCSD's <clip>_gt/ masks."""
  csv_path, masks = clip + ".csv", clip + MASKS_SUFFIX
  if os.path.isfile(csv_path):
    values = []
    with open(csv_path) as f:
      for number, line in enumerate(f, 1):
        field = line.strip().split(",")[-1].strip()
        if not field:
          continue
        if field not in ("0", "1"):
          if number == 1 and not values:
            continue  # a header
          raise AnoganError(f"{csv_path} line {number} holds '{field}', not a frame label; use 0 (normal) or 1 "
                            "(abnormal), one line per frame")
        values.append(int(field))
    labels = np.array(values, np.int64)
  elif os.path.isdir(masks):
    paths = frame_paths(masks)
    labels = np.array([int((read_clip([p], (*frame_size(p)[0], 1)) > 0).any()) for p in paths], np.int64)
  else:
    raise AnoganError(f"test clip {clip} has no frame labels; add {csv_path} (one 0 or 1 per frame) or the masks "
                      f"folder {masks}/")
  if len(labels) != n_frames:
    source = csv_path if os.path.isfile(csv_path) else masks
    raise AnoganError(f"{source} gives {len(labels)} frame labels for the {n_frames} frames of {clip}; give one per "
                      "frame, in name order")
  return labels


def resolve_image_shape(config: Config) -> Config:
  """`config` with a frames folder's image shape made explicit, as folder.resolve_image_shape does
  for pictures: --image_size 0 becomes FOLDER_IMAGE_SIZE, --channels 0 the channels of the training
  frames (which must agree). Every training frame's header is read, so a file that is not a
  picture fails here, before training writes anything."""
  paths = [path for clip in clip_folders(config.data_dir, "train") for path in frame_paths(clip)]
  return folder.with_picture_shape(config, [frame_size(path)[1] for path in paths], paths, "frames")


def _cut(clips: Sequence[str], length: int, shape, labelled: bool):
  """(examples (n, length, h, w, c), frame labels (n, length) or None, names) of the clip folders."""
  examples, labels, names = [], [], []
  for clip in clips:
    frames = read_clip(frame_paths(clip), shape)
    per_frame = frame_labels(clip, len(frames)) if labelled else None
    for start in pieces(len(frames), length, clip):
      examples.append(frames[start:start + length])
      names.append(f"{os.path.basename(clip)}[{start}:{start + length}]")
      if labelled:
        labels.append(per_frame[start:start + length])
  return np.stack(examples), (np.stack(labels) if labelled else None), names


def load_frames(config: Config, read_test: bool = True) -> OneClassData:
  """The frames folder as data.OneClassData of clips (N, clip_length, h, w, c): x_train the
  (kept) training pieces; x_val the held-out ones (--val_fraction); x_test the test pieces (a
  seeded subset with --test_examples) with their frame labels and names, or with --eval_split=val
  the held-out training pieces, all normal."""
  shape, length, root = config.image_shape, config.clip_length, config.data_dir
  x, _, _ = _cut(clip_folders(root, "train"), length, shape, labelled=False)
  kept, held, _ = validation_split(np.zeros(len(x), np.int64), np.array([0]), config.val_fraction, config.seed)
  if config.val_fraction > 0 and not len(held):
    raise AnoganError(f"--val_fraction={config.val_fraction} holds out no clip of the {len(kept)} training clips of "
                      f"{length} frames; raise it or use --val_fraction=0")
  x_train = x[kept[:config.train_examples] if config.train_examples else kept]
  x_val = x[held] if len(held) else None
  empty = np.zeros(0, np.int64)
  if not read_test:
    return OneClassData(x_train=x_train, x_test=np.zeros((0, length) + shape, np.float32), y_test=empty,
                        classes_test=np.zeros(0, object), test_indices=empty, x_val=x_val,
                        frame_labels=np.zeros((0, length), np.int64))
  if config.eval_split == "val":
    chosen = held[test_subset(np.zeros(len(held), np.int64), config.test_examples, config.seed)]
    return OneClassData(x_train=x_train, x_test=x[chosen], y_test=np.zeros(len(chosen), np.int64),
                        classes_test=np.array(["normal"] * len(chosen), object), test_indices=chosen, split="val",
                        x_val=x_val, frame_labels=np.zeros((len(chosen), length), np.int64))
  x_test, labels, names = _cut(clip_folders(root, "test"), length, shape, labelled=True)
  y = labels.max(axis=1)
  idx = test_subset(y, config.test_examples, config.seed)
  split_name = os.path.basename(split_folder(root, "test"))
  return OneClassData(x_train=x_train, x_test=x_test[idx], y_test=y[idx],
                      classes_test=np.array(["abnormal" if v else "normal" for v in y[idx]], object),
                      test_indices=idx, names=[os.path.join(split_name, names[i]) for i in idx], x_val=x_val,
                      frame_labels=labels[idx], pixel_note="frames: no pixel metrics")
