"""Scoring a user's own images with a trained workdir of any model family: read, check, score,
write scores and heatmaps.

Everything is checked before anything is written: the output folder can be created, every image
reads and has the model's size and channels, the models load, and the output folder is writable.
A failing score leaves an existing output folder as it was.

Names: a picture's name is its path relative to the folder holding all the pictures (a folder's
`a.png`, or `d1/x.png` and `d2/x.png` for the glob `*/x.png`); an array's images are named by
index (`0`, `1`, ...). The heatmap of the image named N is `heatmaps/N.png`, so `a.png` and `a.jpg`
get `heatmaps/a.png.png` and `heatmaps/a.jpg.png`. scores.csv names both. Nothing is created
before the mapping is done; then scores.csv is removed, the heatmaps are written, and scores.csv
is written last: an output folder holding scores.csv holds a complete run. scores.csv's columns:
name, score, the family's parts of the score (anogan, egbad: residual, discrimination; ae:
reconstruction; vae: reconstruction, kl), heatmap.
"""

from __future__ import annotations

import csv
import glob
import os
import tempfile
from typing import List, Sequence, Tuple

import numpy as np

from anogan_tf.errors import AnoganError
from anogan_tf.io_utils import atomic_path, check_folder_can_be_made
from anogan_tf.models.base import ScoreResult

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# An RGB picture counts as grayscale when its channels differ by at most this much anywhere
# (JPEG's colour compression shifts a gray picture's channels by a level or two).
GRAY_TOLERANCE = 8
# 8 bits per channel; "I;16", "I" and "F" (16-bit or float pictures) are refused.
EIGHT_BIT_MODES = ("1", "L", "P", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")


def heatmap_name(name: str) -> str:
  """Where the heatmap of the image named `name` goes, relative to the output folder."""
  return f"heatmaps/{name}.png"


# --- reading the images

def _read_picture(path: str, image_shape: Tuple[int, int, int]) -> np.ndarray:
  """One picture as uint8 (h, w, c), or AnoganError saying what is wrong with it."""
  from PIL import Image
  h, w, channels = image_shape
  try:
    with Image.open(path) as image:
      if image.size != (w, h):  # known from the header, before decoding
        raise AnoganError(f"{path} is {image.size[0]}x{image.size[1]} pixels but the model expects {w}x{h}; "
                          "resize it or use a model trained on that size")
      if image.mode not in EIGHT_BIT_MODES:
        raise AnoganError(f"{path} has {image.mode} pixels, more than 8 bits per channel; save it as an "
                          "8-bit PNG or JPEG")
      if image.mode in ("1", "L"):
        if channels != 1:
          raise AnoganError(f"{path} is a grayscale image but the model was trained on colour ({channels}-channel) "
                            "images; convert it to RGB if you mean to score it as a colour image")
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]
      rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
      if rgba[..., 3].min() < 255:
        raise AnoganError(f"{path} has transparent pixels, which the model cannot see; flatten it onto a "
                          "background (save it without an alpha channel)")
      rgb = rgba[..., :3]
      if channels == 3:
        return rgb
      spread = int((rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)).max())
      if spread > GRAY_TOLERANCE:
        raise AnoganError(f"{path} is a colour image ({image.mode}) but the model was trained on grayscale "
                          "(1-channel) images; convert it to grayscale first (e.g. PIL's .convert('L'))")
      return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]
  except AnoganError:
    raise
  except IsADirectoryError:
    raise AnoganError(f"{path} is a folder, not a picture; pass a folder of pictures or a glob that matches "
                      "only pictures (e.g. 'dir/*.png') as --input") from None
  except OSError as e:
    if e.errno is not None:  # opening failed: missing, no permission
      raise AnoganError(f"cannot read {path} ({e.strerror}); check that it exists and is readable") from None
    raise AnoganError(f"{path} is not a readable image ({type(e).__name__}: damaged or not a PNG/JPEG); "
                      "remove or replace it") from None
  except Exception as e:  # Pillow raises SyntaxError, ValueError, DecompressionBombError, ...
    raise AnoganError(f"{path} is not a readable image ({type(e).__name__}: damaged or not a PNG/JPEG); "
                      "remove or replace it") from None


def _picture_paths(source: str) -> Tuple[List[str], List[str]]:
  """(paths, names) of the pictures at a folder, a glob or a single file; names are the paths
  relative to the folder holding them all."""
  if os.path.isdir(source):
    try:
      entries = sorted(os.listdir(source))
    except OSError as e:
      raise AnoganError(f"cannot read folder {source} ({e.strerror}); check its permissions") from None
    paths = [os.path.join(source, n) for n in entries
             if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
      raise AnoganError(f"no PNG/JPEG images in {source} (files ending in .png, .jpg or .jpeg); pass a folder of "
                        "images, a glob like 'dir/*.png', or an .npy/.npz array as --input")
    return paths, [os.path.basename(p) for p in paths]
  if os.path.lexists(source):
    paths = [source]  # a single file, even one whose name holds glob characters
  elif glob.has_magic(source):
    paths = sorted(glob.glob(source))
    if not paths:
      raise AnoganError(f"{source} matches no files; check the pattern given as --input (quote it so the "
                        "shell does not expand it)")
  else:
    raise AnoganError(f"{source} does not exist; pass an existing folder, a glob like 'dir/*.png', or an "
                      ".npy/.npz file as --input")
  root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
  return paths, [os.path.relpath(os.path.abspath(p), root) for p in paths]


def _read_array(source: str) -> np.ndarray:
  if not os.path.isfile(source):
    raise AnoganError(f"{source} does not exist or is not a file; pass an existing .npy/.npz file, a folder "
                      "or a glob as --input")
  try:
    loaded = np.load(source, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
      return loaded
    with loaded:
      if not loaded.files:
        raise AnoganError(f"{source} holds no arrays; save the images with np.savez(path, x=images)")
      if len(loaded.files) > 1:
        raise AnoganError(f"{source} holds {len(loaded.files)} arrays ({', '.join(loaded.files)}), so which "
                          "are the images is unclear; save only the images: np.savez(path, x=images)")
      return loaded[loaded.files[0]]
  except AnoganError:
    raise
  except Exception as e:  # zipfile, zlib, truncation, pickled objects: a damaged or foreign file
    raise AnoganError(f"{source} is not a readable NumPy file ({type(e).__name__}); save it again with "
                      "np.save(path, images)") from None


def read_images(source: str, image_shape: Tuple[int, int, int]) -> Tuple[np.ndarray, List[str]]:
  """Images (n, h, w, c) in [-1, 1] and one unique name per image, from a folder, a glob, a single
  picture, or an .npy/.npz array (uint8 pixels 0..255 or floats in [-1, 1])."""
  image_shape = tuple(image_shape)
  expected = f"(n, {', '.join(map(str, image_shape))})"
  if image_shape[-1] == 1:
    expected += f" (or (n, {image_shape[0]}, {image_shape[1]}))"
  if source.lower().endswith((".npy", ".npz")):
    array = _read_array(source)
    if array.ndim == 0:
      raise AnoganError(f"{source} holds a single value (a 0-d array), not images; save an array of shape "
                        f"{expected}")
    if array.ndim == 3 and image_shape[-1] == 1 and array.shape[1:] == image_shape[:2]:
      array = array[..., None]
    if array.ndim != 4 or tuple(array.shape[1:]) != image_shape:
      hint = "; for a single image add the first axis: x[None]" if tuple(array.shape) in (
          image_shape, image_shape[:2] if image_shape[-1] == 1 else None) else ""
      raise AnoganError(f"{source} holds an array of shape {tuple(array.shape)} but the model expects {expected}; "
                        f"resize the images or use a model trained on that shape{hint}")
    if array.dtype.kind not in "uif":
      raise AnoganError(f"{source} has dtype {array.dtype}; store uint8 pixels 0..255 or floats in [-1, 1]")
    names = [str(i) for i in range(len(array))]
  else:
    paths, names = _picture_paths(source)
    array = np.stack([_read_picture(p, image_shape) for p in paths])
  if len(array) == 0:
    raise AnoganError(f"{source} holds no images (its first axis has length 0)")
  if array.dtype.kind in "ui":
    if array.min() < 0 or array.max() > 255:
      raise AnoganError(f"integer images must be 0..255 pixels; {source} spans [{array.min()}, {array.max()}]")
    return array.astype(np.float32) / 127.5 - 1.0, names
  array = array.astype(np.float32)
  bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
  if len(bad):
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise AnoganError(f"image {bad[0]}{more} of {source} contains NaN or inf; repair or drop those images")
  if array.min() < -1.001 or array.max() > 1.001:
    raise AnoganError(f"float images must be scaled to [-1, 1]; {source} spans [{array.min():.3g}, {array.max():.3g}] "
                      "(use x / 127.5 - 1 for 0..255 pixels)")
  return array, names


# --- the output folder

def check_output(output: str, heatmaps: Sequence[str]) -> None:
  """Read-only: `output` can be a folder here, and nothing in the way of the files to write."""
  check_folder_can_be_made(output, "--output", "--output")
  folders = set()
  for heatmap in heatmaps:
    folder = os.path.dirname(heatmap)
    while folder:
      folders.add(folder)
      folder = os.path.dirname(folder)
  for relative in sorted(folders):
    path = os.path.join(output, relative)
    if os.path.exists(path) and not os.path.isdir(path):
      raise AnoganError(f"{path} is a file, not a folder; move it away or choose another --output")
  for relative in ["scores.csv", *heatmaps]:
    path = os.path.join(output, relative)
    if os.path.isdir(path):
      raise AnoganError(f"{path} is a folder, where the output file goes; move it away or choose another --output")


def _folders(output: str, heatmaps: Sequence[str]) -> List[str]:
  return sorted({output} | {os.path.join(output, os.path.dirname(h)) for h in heatmaps})


def check_writable(output: str, heatmaps: Sequence[str]) -> None:
  """`check_output`, then a probe that files can be written where the output goes, creating
  nothing: an unnamed temporary file in the nearest existing folder of each output folder."""
  check_output(output, heatmaps)
  existing = set()
  for folder in _folders(output, heatmaps):
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
      folder = os.path.dirname(folder)
    existing.add(folder)
  try:
    for folder in sorted(existing):
      with tempfile.TemporaryFile(dir=folder):
        pass
  except OSError as e:
    raise AnoganError(f"cannot write to --output {output} ({e.strerror}); choose a writable --output") from None


def _make_folders(output: str, heatmaps: Sequence[str]) -> None:
  try:
    for folder in _folders(output, heatmaps):
      os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise AnoganError(f"cannot write to --output {output} ({e.strerror}); choose a writable --output") from None


def write_scores_csv(path: str, header: Sequence[str], rows) -> None:
  """A CSV written with the csv module (names with commas or quotes read back intact), atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
      writer = csv.writer(f, lineterminator="\n")
      writer.writerow(header)
      writer.writerows(rows)


# --- scoring

def score_images(config, workdir: str, source: str, output: str, progress: bool = True) -> np.ndarray:
  """Scores the images at `source` with the workdir's `config.model` family; writes
  output/scores.csv and output/heatmaps/<name>.png (the residual map); returns the scores."""
  check_output(output, [])  # at once, before reading what may be many images
  images, names = read_images(source, config.image_shape)
  heatmaps = [heatmap_name(n) for n in names]
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from tqdm import tqdm
  from anogan_tf import models
  from anogan_tf.evaluate_lib import load_networks
  family = models.family(config.model)
  if config.strategy == "default":
    scorer = family.make_scorer(config, load_networks(workdir, family, config))
  else:  # the networks on the strategy's devices, each chunk split across them
    from anogan_tf import distribute
    scorer = distribute.make_scorer(family, config, lambda: load_networks(workdir, family, config))
  if tuple(scorer.image_shape) != tuple(config.image_shape):
    raise AnoganError(f"the networks in {workdir} take {tuple(scorer.image_shape)} images, not the "
                      f"{tuple(config.image_shape)} of --dataset={config.dataset}; keep --dataset as the workdir's "
                      "flags.txt has it")
  check_writable(output, heatmaps)

  chunks = []
  with tqdm(total=len(images), desc="score", unit="img", disable=not progress) as bar:
    for chunk in scorer.score_chunks(images):
      chunks.append(chunk)
      bar.update(len(chunk))
  result = ScoreResult.concatenate(chunks)
  _make_folders(output, heatmaps)
  scores_path = os.path.join(output, "scores.csv")
  if os.path.exists(scores_path):
    os.remove(scores_path)  # output is incomplete until the new one is written, last
  for heatmap, residual_map in zip(heatmaps, result.residual_map):
    with atomic_path(os.path.join(output, heatmap)) as tmp:
      plt.imsave(tmp, residual_map.mean(axis=-1), cmap="inferno", vmin=0.0, vmax=2.0)
  write_scores_csv(scores_path, ("name", "score") + tuple(result.parts) + ("heatmap",),
                   [(n, *(f"{v:.8g}" for v in values), h) for n, h, *values in
                    zip(names, heatmaps, result.score, *result.parts.values())])
  return result.score
