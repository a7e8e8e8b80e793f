"""Scoring a user's own images with a trained workdir: read, check, map, write scores and heatmaps."""

from __future__ import annotations

import glob
import os
import zipfile
import zlib
from typing import List, Tuple

import numpy as np

from anogan_tf.errors import AnoganError
from anogan_tf.io_utils import atomic_path, write_text

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _read_picture(path: str, channels: int) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib
  try:
    with Image.open(path) as image:
      image = image.convert("L" if channels == 1 else "RGB")
      array = np.asarray(image, dtype=np.uint8)
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise AnoganError(f"{path} is not a readable image ({type(e).__name__}); remove or replace it") from None
  return array[..., None] if channels == 1 else array


def read_images(source: str, image_shape: Tuple[int, int, int]) -> Tuple[np.ndarray, List[str]]:
  """Images (n, h, w, c) in [-1, 1] and one name per image, from a folder, a glob, or .npy/.npz."""
  if source.endswith((".npy", ".npz")):
    if not os.path.isfile(source):
      raise AnoganError(f"{source} does not exist; pass an existing .npy/.npz file, a folder or a glob")
    try:
      loaded = np.load(source, allow_pickle=False)
      if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
          if not loaded.files:
            raise AnoganError(f"{source} holds no arrays; save the images with np.savez(path, x=images)")
          array = loaded[loaded.files[0]]
      else:
        array = loaded
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
      raise AnoganError(f"{source} is not a readable NumPy file ({type(e).__name__}); save it again with np.save") from None
    if array.ndim == 3 and image_shape[-1] == 1:
      array = array[..., None]
    names = [f"{i}" for i in range(len(array))]
  else:
    paths = (sorted(p for p in glob.glob(os.path.join(source, "*")) if p.lower().endswith(IMAGE_EXTENSIONS))
             if os.path.isdir(source) else sorted(glob.glob(source)))
    if not paths:
      raise AnoganError(f"no PNG/JPEG images found at {source}; pass a folder of images, a glob like "
                        "'dir/*.png', or an .npy/.npz array")
    pictures = [_read_picture(p, image_shape[-1]) for p in paths]
    for path, picture in zip(paths, pictures):
      if picture.shape != tuple(image_shape):
        raise AnoganError(f"{path} is {picture.shape[1]}x{picture.shape[0]} pixels but the model expects "
                          f"{image_shape[1]}x{image_shape[0]}; resize it or use a model trained on that size")
    array = np.stack(pictures)
    names = [os.path.basename(p) for p in paths]
  if array.ndim != 4 or tuple(array.shape[1:]) != tuple(image_shape):
    raise AnoganError(f"images have shape {tuple(array.shape[1:])} but the model expects {tuple(image_shape)}; "
                      "resize them or use a model trained on that shape")
  if len(array) == 0:
    raise AnoganError(f"{source} holds no images")
  if np.issubdtype(array.dtype, np.integer):
    if array.min() < 0 or array.max() > 255:
      raise AnoganError(f"integer images must be 0..255 pixels; {source} spans [{array.min()}, {array.max()}]")
    return array.astype(np.float32) / 127.5 - 1.0, names
  array = array.astype(np.float32)
  if not np.isfinite(array).all():
    raise AnoganError(f"{source} contains NaN or inf; repair those images")
  if array.min() < -1.001 or array.max() > 1.001:
    raise AnoganError(f"float images must be scaled to [-1, 1]; {source} spans [{array.min():.3g}, {array.max():.3g}] "
                      "(use x / 127.5 - 1 for 0..255 pixels)")
  return array, names


def score_images(config, workdir: str, source: str, output: str, progress: bool = True) -> np.ndarray:
  """Scores the images at `source`; writes output/scores.csv and output/heatmaps/<name>.png."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from tqdm import tqdm
  from anogan_tf.evaluate_lib import load_models
  from anogan_tf.mapper import LatentMapper
  generator, discriminator = load_models(workdir)
  images, names = read_images(source, tuple(generator.image_shape))
  os.makedirs(os.path.join(output, "heatmaps"), exist_ok=True)
  mapper = LatentMapper(generator, discriminator, **config.mapper_kwargs())
  with tqdm(total=len(images), desc="map", unit="img", disable=not progress) as bar:
    result = mapper.map(images, on_chunk=bar.update)
  rows = ["name,score,residual,discrimination"]
  rows += [f"{n},{s:.8g},{r:.8g},{d:.8g}" for n, s, r, d in
           zip(names, result.score, result.residual, result.discrimination)]
  write_text(os.path.join(output, "scores.csv"), "\n".join(rows) + "\n")
  for name, residual_map in zip(names, result.residual_map):
    with atomic_path(os.path.join(output, "heatmaps", f"{os.path.splitext(name)[0]}.png")) as tmp:
      plt.imsave(tmp, residual_map.mean(axis=-1), cmap="inferno", vmin=0.0, vmax=2.0)
  return result.score
