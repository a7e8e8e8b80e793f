"""Your own images (--dataset=folder --data_dir=ROOT), in the MVTec AD layout:

  ROOT/train/good/*.png|.jpg|.jpeg        the normal training images
  ROOT/test/good/*                        normal test images (label 0)
  ROOT/test/<defect>/*                    anomalous test images (label 1), one folder per kind of defect
  ROOT/ground_truth/<defect>/<name>_mask.png   optional: the defect's pixels (non-zero) in test/<defect>/<name>.*

Pictures of any size, PNG or JPEG, grayscale or colour, are decoded to --channels (1 or 3; 0: that
of the training images, which must then agree; `resolve_image_shape` writes it into the config,
and so into flags.txt), resized to --image_size square (bilinear with antialiasing,
tf.image.resize: the aspect ratio is not kept) and scaled to [-1, 1] as float32, as the .npz
datasets are. `decode` is the one way a picture becomes an image here: training, evaluation and
`read_image` (for scoring pictures) see the same pixels.

The training images are not held in memory: `ImageFiles` lists them, and each epoch streams
them from disk through tf.data (read, decode, resize in parallel, a batch or two ahead) in the
order of the epoch's seeded permutation, so a folder larger than memory trains and a resumed run
reads exactly the batches an uninterrupted one reads. The test images (usually far fewer) are
read into memory for evaluate, with their masks resized to the same size.

Masks follow MVTec AD: the good test images have all-zero masks; a defect folder whose
ground_truth/<defect>/ holds masks needs one for each of its images (else an error names the
missing one); if some defect has no masks at all (or there is no ground_truth/), evaluate
skips the pixel metrics and says why.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from anogan_tf.config import FOLDER_IMAGE_SIZE, Config
from anogan_tf.data.splits import OneClassData, test_subset, validation_split
from anogan_tf.errors import AnoganError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
GOOD = "good"  # the normal class's folder name, in train/ and test/
MASK_SUFFIX = "_mask"
LAYOUT = "MVTec AD layout: train/good/, test/good/, test/<defect>/, optional ground_truth/<defect>/<name>_mask.png"
# Pillow modes of one channel; every other mode (RGB, RGBA, P, CMYK, YCbCr, ...) decodes to three.
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
READ_BATCH = 64  # images decoded per batch when reading into memory (test images, samples)
# What tf.data raises for a picture that does not decode (or a file gone since it was listed).
PICTURE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError)


# --- one picture

def decode(contents: tf.Tensor, image_shape: Sequence[int]) -> tf.Tensor:
  """An encoded PNG/JPEG (a scalar string tensor) -> float32 (h, w, c) in [-1, 1]: decoded to c
  channels (grayscale replicated to RGB, colour converted to gray by the decoder), resized to
  h x w by bilinear interpolation with antialiasing (an image of that size already is unchanged)."""
  h, w, c = (int(s) for s in image_shape)
  image = tf.io.decode_image(contents, channels=c, expand_animations=False)  # uint8 (h0, w0, c)
  image = tf.image.resize(image, (h, w), antialias=True)  # float32, 0..255: a weighted mean of pixels
  image.set_shape((h, w, c))
  return image / 127.5 - 1.0  # as data.to_float_images scales the .npz datasets


def _op_reason(error: tf.errors.OpError) -> str:
  """TensorFlow's message without its '{{function_node ...}}' prefix and '[Op:...]' suffix."""
  message = re.sub(r"\{\{[^}]*\}\}\s*", "", error.message or type(error).__name__)
  return message.split(" [Op:")[0].splitlines()[0].strip().rstrip(".")


def read_image(path: str, image_shape: Sequence[int]) -> np.ndarray:
  """One picture as float32 (h, w, c) in [-1, 1], decoded and resized as for training (`decode`),
  or an AnoganError naming the file. For reusing elsewhere (scoring pictures of another size)."""
  try:
    contents = tf.io.read_file(path)
  except tf.errors.OpError as e:
    raise AnoganError(f"cannot read {path} ({_op_reason(e)}); check that it exists and is readable") from None
  try:
    return decode(contents, image_shape).numpy()
  except tf.errors.OpError as e:
    raise AnoganError(f"{path} is not a readable image ({_op_reason(e)}: damaged, or not a PNG/JPEG); "
                      "remove or replace it") from None


def picture_channels(path: str) -> int:
  """1 or 3: the channels of the picture at `path`, from its header (Pillow reads no pixels), or an
  AnoganError naming the file when it is not a picture."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      return 1 if image.mode in GRAY_MODES else 3
  except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
    raise unreadable_picture(path, e) from None


def unreadable_picture(path: str, error: Exception) -> AnoganError:
  """The one-line error for a picture Pillow could not open or decode (training, evaluate, score)."""
  if isinstance(error, OSError) and error.errno is not None:  # opening failed: missing, no permission
    return AnoganError(f"cannot read {path} ({error.strerror}); check that it exists and is readable")
  return AnoganError(f"{path} is not a readable image ({type(error).__name__}: damaged, or not a PNG/JPEG); "
                     "remove or replace it")


# --- the folders

def list_images(folder: str, what: str) -> List[str]:
  """The PNG/JPEG files in `folder` (not its subfolders; hidden files skipped), sorted by name;
  an AnoganError naming the folder when it is missing or holds none. `what` says what belongs there."""
  if not os.path.isdir(folder):
    raise AnoganError(f"{folder} is missing; put {what} there ({LAYOUT}), or fix --data_dir")
  try:
    names = sorted(os.listdir(folder))
  except OSError as e:
    raise AnoganError(f"cannot read folder {folder} ({e.strerror}); check its permissions") from None
  paths = [os.path.join(folder, n) for n in names if not n.startswith(".")
           and n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, n))]
  if not paths:
    raise AnoganError(f"no PNG/JPEG images in {folder} (files ending in .png, .jpg or .jpeg); put {what} there")
  return paths


def check_root(root: str) -> None:
  if not os.path.isdir(root):
    raise AnoganError(f"data folder {root} does not exist; --data_dir must name the folder holding train/good/ "
                      f"and test/ ({LAYOUT})")


def training_paths(root: str) -> List[str]:
  check_root(root)
  return list_images(os.path.join(root, "train", GOOD), "the normal training images")


def resolve_image_shape(config: Config) -> Config:
  """`config` with a folder's image shape made explicit: --image_size 0 becomes FOLDER_IMAGE_SIZE,
  --channels 0 the channel count of the training images (read from their headers, which must
  agree). Every training image's header is read, so a file that is not a picture fails here,
  before training writes anything. Other datasets' configs are returned as they are."""
  if config.dataset != "folder":
    return config
  paths = training_paths(config.data_dir)
  return with_picture_shape(config, [picture_channels(path) for path in paths], paths, "images")


def with_picture_shape(config: Config, channels: Sequence[int], paths: Sequence[str], what: str) -> Config:
  """`config` with --image_size 0 made FOLDER_IMAGE_SIZE and --channels 0 the `channels` (1 or 3)
  of the training pictures at `paths` ("images", "frames" in the error), which must agree."""
  found = {}  # channels -> the first training picture that has them
  for c, path in zip(channels, paths):
    found.setdefault(c, path)
  chosen = config.channels
  if not chosen:
    if len(found) > 1:
      raise AnoganError(f"the training {what} mix grayscale ({found[1]}) and colour ({found[3]}) pictures; pass "
                        "--channels=1 (grayscale) or --channels=3 (RGB) to convert them all to one")
    (chosen,) = found
  return config.replace(image_size=config.image_size or FOLDER_IMAGE_SIZE, channels=chosen)


@dataclasses.dataclass(frozen=True)
class ImageFiles:
  """Pictures on disk, read on demand: `paths` decoded (`decode`) to `image_shape`.

  `dataset(order, extras, batch_size)` streams them in that order, zipped with the rows of
  `extras` (the training noise), in batches; `read(positions)` reads some into memory. When
  decoding fails, `unreadable()` finds the file and names it."""

  paths: Tuple[str, ...]
  image_shape: Tuple[int, int, int]

  def __len__(self) -> int:
    return len(self.paths)

  def _images(self, paths) -> tf.data.Dataset:
    shape = self.image_shape
    return tf.data.Dataset.from_tensor_slices(tf.constant(list(paths), tf.string)).map(
        lambda path: decode(tf.io.read_file(path), shape), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  def dataset(self, order: np.ndarray, extras: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """(images (b, h, w, c), extras rows (b, ...)) batches of the pictures at positions `order`,
    in that order (the last batch smaller), decoded in parallel a couple of batches ahead."""
    paths = [self.paths[i] for i in order]
    pairs = tf.data.Dataset.zip(self._images(paths), tf.data.Dataset.from_tensor_slices(extras))
    return pairs.batch(batch_size).prefetch(2)  # bounded: two batches in memory beside the one training

  def read(self, positions: Optional[Sequence[int]] = None) -> np.ndarray:
    """The pictures at `positions` (default: all) as float32 (n, h, w, c) in [-1, 1]."""
    paths = list(self.paths) if positions is None else [self.paths[i] for i in positions]
    if not paths:
      return np.zeros((0,) + tuple(self.image_shape), np.float32)
    try:
      return np.concatenate([batch.numpy() for batch in self._images(paths).batch(READ_BATCH)])
    except PICTURE_ERRORS:
      error = ImageFiles(tuple(paths), self.image_shape).unreadable()
      if error is None:
        raise  # not a picture's fault
      raise error from None

  def unreadable(self) -> Optional[AnoganError]:
    """After tf.data failed on these pictures: the AnoganError of the first one that does not
    decode (read_image's, naming it), or None if every one does."""
    for path in self.paths:
      try:
        read_image(path, self.image_shape)
      except AnoganError as e:
        return e
    return None


# --- masks

def _mask_files(folder: str) -> dict:
  """{image stem: mask path} of ground_truth/<defect>/: <stem>_mask.png (or .jpg, .jpeg)."""
  if not os.path.isdir(folder):
    return {}
  masks = {}
  for name in sorted(os.listdir(folder)):
    stem, ext = os.path.splitext(name)
    if ext.lower() in IMAGE_EXTENSIONS and stem.endswith(MASK_SUFFIX) and not name.startswith("."):
      masks.setdefault(stem[:-len(MASK_SUFFIX)], os.path.join(folder, name))
  return masks


def mask_files(root: str, paths: Sequence[str], classes: Sequence[str]) -> Tuple[Optional[List[Optional[str]]], str]:
  """For the test pictures `paths` of the folders `classes`: (the mask file of each, None for the
  good ones; "") when pixel metrics can be computed, else (None, why not). A defect with masks
  needs one for each of its images: an AnoganError names the first missing one."""
  truth = os.path.join(root, "ground_truth")
  if not os.path.isdir(truth):
    return None, f"no {truth} folder: pixel metrics need the defects' masks as ground_truth/<defect>/<name>_mask.png"
  defects = sorted(set(classes) - {GOOD})
  found = {defect: _mask_files(os.path.join(truth, defect)) for defect in defects}
  missing = [defect for defect in defects if not found[defect]]
  if missing:
    others = f" (nor for {len(missing) - 1} other defect folders)" if len(missing) > 1 else ""
    return None, (f"no masks for test/{missing[0]}/ in {os.path.join(truth, missing[0])}{others}: pixel metrics "
                  "need a mask for every defect image")
  files = []
  for path, cls in zip(paths, classes):
    stem = os.path.splitext(os.path.basename(path))[0]
    if cls != GOOD and stem not in found[cls]:
      raise AnoganError(f"{path} has no mask {os.path.join(truth, cls, stem + MASK_SUFFIX + '.png')}, though other "
                        f"images of test/{cls}/ have one; add it, or remove {os.path.join(truth, cls)} to skip the "
                        "pixel metrics")
    files.append(None if cls == GOOD else found[cls][stem])
  return files, ""


def read_masks(files: Sequence[Optional[str]], image_shape: Sequence[int]) -> np.ndarray:
  """bool (n, h, w): the mask pictures `files` (None: a good image, all zero), each resized like
  the images whatever its own size, then thresholded at half the 0..255 range (MVTec's masks
  are 0 and 255)."""
  h, w = int(image_shape[0]), int(image_shape[1])
  masks = np.zeros((len(files), h, w), bool)
  for i, path in enumerate(files):
    if path is not None:
      masks[i] = read_image(path, (h, w, 1))[..., 0] > 0.0  # in [-1, 1]: 0 is the midpoint 127.5
  return masks


# --- the dataset

def test_files(root: str) -> Tuple[List[str], List[str]]:
  """(paths, class folder of each) of every test picture: test/good/ and each test/<defect>/,
  sorted by folder, then name."""
  check_root(root)
  test = os.path.join(root, "test")
  if not os.path.isdir(test):
    raise AnoganError(f"{test} is missing; put the test images in test/good/ (normal) and test/<defect>/ "
                      f"(anomalous) ({LAYOUT})")
  folders = sorted(n for n in os.listdir(test) if not n.startswith(".") and os.path.isdir(os.path.join(test, n)))
  if GOOD not in folders:
    raise AnoganError(f"{os.path.join(test, GOOD)} is missing; put normal test images there (evaluate needs both "
                      "normal and anomalous ones)")
  if folders == [GOOD]:
    raise AnoganError(f"{test} holds only good/; put anomalous test images in test/<defect>/ folders (one per kind "
                      "of defect)")
  paths, classes = [], []
  for folder in folders:
    what = "normal test images" if folder == GOOD else f"the test images of defect '{folder}' (or remove the folder)"
    found = list_images(os.path.join(test, folder), what)
    paths += found
    classes += [folder] * len(found)
  return paths, classes


def load_folder(config: Config, read_test: bool = True):
  """The folder dataset as data.OneClassData: x_train the (kept) training pictures as ImageFiles,
  streamed by the trainer; x_test, with --eval_split=test, the test pictures (a seeded subset with
  --test_examples) read into memory, their file names and masks; with --eval_split=val, the
  held-out training pictures (--val_fraction), all normal. `read_test=False` (training) leaves
  the test split unread."""
  root = config.data_dir
  shape = config.image_shape
  paths = training_paths(root)
  kept, held, _ = validation_split(np.zeros(len(paths), np.int64), np.array([0]), config.val_fraction, config.seed)
  if config.val_fraction > 0 and not len(held):
    raise AnoganError(f"--val_fraction={config.val_fraction} holds out no image of the {len(kept)} normal "
                      "training images; raise it or use --val_fraction=0")
  train_positions = kept[:config.train_examples] if config.train_examples else kept
  x_train = ImageFiles(tuple(paths[i] for i in train_positions), shape)
  relative = lambda path: os.path.relpath(path, root)  # noqa: E731
  if not read_test:
    empty = np.zeros(0, np.int64)
    return OneClassData(x_train=x_train, x_test=np.zeros((0,) + shape, np.float32), y_test=empty,
                        classes_test=np.zeros(0, object), test_indices=empty)
  if config.eval_split == "val":
    chosen = held[test_subset(np.zeros(len(held), np.int64), config.test_examples, config.seed)]
    files = ImageFiles(tuple(paths[i] for i in chosen), shape)
    return OneClassData(x_train=x_train, x_test=files.read(),
                        y_test=np.zeros(len(chosen), np.int64), classes_test=np.array([GOOD] * len(chosen), object),
                        test_indices=chosen, split="val", names=[relative(p) for p in files.paths],
                        pixel_note="the validation set (held-out train/good/ images) has no masks")
  all_paths, all_classes = test_files(root)
  labels = np.array([int(c != GOOD) for c in all_classes], np.int64)
  idx = test_subset(labels, config.test_examples, config.seed)
  masks, note = mask_files(root, all_paths, all_classes)  # judged on every test image: a subset does not change it
  if masks is not None:
    masks = read_masks([masks[i] for i in idx], shape)
  files = ImageFiles(tuple(all_paths[i] for i in idx), shape)
  return OneClassData(x_train=x_train, x_test=files.read(), y_test=labels[idx],
                      classes_test=np.array([all_classes[i] for i in idx], object), test_indices=idx,
                      names=[relative(p) for p in files.paths], masks=masks, pixel_note=note)
