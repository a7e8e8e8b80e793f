"""Scoring a user's own images with a trained workdir of any model family: read, check, score,
decide, and write a report people read.

Pictures are read as training and evaluate read a folder's (folder_data: decoded, resized from
any size to the model's, scaled to [-1, 1]), so a picture gets the score evaluate gives the same
file. Everything is checked before anything is written: the output folder can be created, every
image reads and has the model's channels (or is converted with `grayscale`), every array has the
model's size, the models load, threshold.json (if any) reads, and the output folder is writable.
A failing score leaves an existing output folder as it was.

Names: a picture's name is its path relative to the folder holding all the pictures (a folder's
`a.png`, or `d1/x.png` and `d2/x.png` for the glob `*/x.png`); an array's images are named by
index (`0`, `1`, ...). The report of the image named N is `reports/N.png`, so `a.png` and `a.jpg`
get `reports/a.png.png` and `reports/a.jpg.png`. Nothing is created before the mapping is done;
then scores.csv is removed, the reports and `top.png` are written, and scores.csv is written
last: an output folder holding scores.csv holds a complete run.

scores.csv's columns: file (the name), score, is_anomaly (1: score above the workdir's threshold,
0: not; empty for every image when there is no threshold that applies, see threshold.py), the
family's parts of the score (anogan, egbad: residual, discrimination; ae: reconstruction; vae:
reconstruction, kl), report. A report is REPORT_INCHES at REPORT_DPI (plots.py): query,
reconstruction, and the residual laid over the query with a colour bar whose scale is the same
for every image of the run. `top.png` shows the `top` highest scores (ties: in name order).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from anogan_tf.errors import AnoganError
from anogan_tf.evaluation import threshold
from anogan_tf.models.base import ScoreResult
from anogan_tf.utils.files import check_folder_can_be_made, exact, write_scores_csv

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# An RGB picture counts as grayscale when its channels differ by at most this much anywhere
# (JPEG's colour compression shifts a gray picture's channels by a level or two).
GRAY_TOLERANCE = 8
# 8 bits per channel; "I;16", "I" and "F" (16-bit or float pictures) are refused.
EIGHT_BIT_MODES = ("1", "L", "P", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")


SCORES_CSV = "scores.csv"
TOP_GALLERY = "top.png"
DEFAULT_TOP = 10


def report_name(name: str) -> str:
  """Where the report of the image named `name` goes, relative to the output folder."""
  return f"reports/{name}.png"


# --- reading the images

def _check_picture(path: str, image_shape: Tuple[int, int, int], grayscale: bool = False) -> None:
  """Read-only: an AnoganError saying what is wrong with the picture at `path` for a model of
  `image_shape`: more than 8 bits per channel, transparent pixels, or colour that does not match
  the model's (a colour picture for a 1-channel model needs `grayscale`, unless its channels are
  equal within GRAY_TOLERANCE). Its size is free: `_read_pictures` resizes it, as training does."""
  from PIL import Image
  channels = image_shape[-1]
  try:
    with Image.open(path) as image:
      if image.mode not in EIGHT_BIT_MODES:
        raise AnoganError(f"{path} has {image.mode} pixels, more than 8 bits per channel; save it as an "
                          "8-bit PNG or JPEG")
      if image.mode in ("1", "L"):
        if channels != 1:
          raise AnoganError(f"{path} is a grayscale image but the model was trained on colour ({channels}-channel) "
                            "images; convert it to RGB if you mean to score it as a colour image")
        return
      rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
      if rgba[..., 3].min() < 255:
        raise AnoganError(f"{path} has transparent pixels, which the model cannot see; flatten it onto a "
                          "background (save it without an alpha channel)")
      if channels == 1:
        spread = int((rgba[..., :3].max(axis=-1).astype(np.int16) - rgba[..., :3].min(axis=-1)).max())
        if spread > GRAY_TOLERANCE and not grayscale:
          raise AnoganError(f"{path} is a colour image ({image.mode}) but the model was trained on grayscale "
                            "(1-channel) images; pass --grayscale to convert it to grayscale (or convert it "
                            "yourself, e.g. PIL's .convert('L'))")
        if image.mode == "CMYK":
          raise AnoganError(f"{path} is a CMYK picture, which the decoder cannot turn gray for a 1-channel model; "
                            "save it as an RGB or grayscale PNG or JPEG")
  except AnoganError:
    raise
  except IsADirectoryError:
    raise AnoganError(f"{path} is a folder, not a picture; pass a folder of pictures or a glob that matches "
                      "only pictures (e.g. 'dir/*.png') as --input") from None
  except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
    from anogan_tf.data.folder import unreadable_picture
    raise unreadable_picture(path, e) from None


def _read_pictures(paths: Sequence[str], image_shape: Tuple[int, int, int], grayscale: bool = False) -> np.ndarray:
  """The pictures at `paths` as float32 (n, h, w, c) in [-1, 1], read as training and evaluate
  read a folder's (folder_data.ImageFiles): decoded to c channels (colour to gray by the decoder),
  resized from any size to h x w (bilinear with antialiasing), scaled to [-1, 1]. So a picture
  scored here gets the pixels, and the score, evaluate gives the same file. Each is checked
  first (`_check_picture`)."""
  from anogan_tf.data.folder import ImageFiles
  for path in paths:
    _check_picture(path, image_shape, grayscale)
  return ImageFiles(tuple(paths), tuple(image_shape)).read()


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


def _convert_array(x: np.ndarray, image_shape: Tuple[int, int, int]) -> np.ndarray:
  """Float colour images (n, h, w, 3) in [-1, 1] to gray ones (n, h, w, 1) by ITU-R 601 luma,
  clipped to [-1, 1]."""
  x = x @ np.array([[0.299], [0.587], [0.114]], np.float32)
  return np.clip(x, -1.0, 1.0).astype(np.float32)


def read_images(source: str, image_shape: Tuple[int, int, int], resize: bool = False,
                grayscale: bool = False) -> Tuple[np.ndarray, List[str]]:
  """Images (n, h, w, c) in [-1, 1] and one unique name per image, from a folder, a glob, a single
  picture, or an .npy/.npz array (uint8 pixels 0..255 or floats in [-1, 1]).

  Pictures are read as training reads them (`_read_pictures`): any size is resized to the
  model's; colour pictures for a 1-channel model need `grayscale` (the decoder turns them gray).
  Arrays must have the model's size (an error says so); with `grayscale` colour arrays become
  gray for a 1-channel model (ITU-R 601 luma). `resize` changes nothing: it is accepted for
  command lines written when pictures of another size needed it."""
  del resize  # pictures of any size are resized, as in training
  image_shape = tuple(image_shape)
  if grayscale and image_shape[-1] != 1:
    raise AnoganError(f"--grayscale converts pictures for a 1-channel model, but this model takes "
                      f"{image_shape[-1]}-channel "
                      "(colour) images; drop --grayscale")
  if not source.lower().endswith((".npy", ".npz")):
    paths, names = _picture_paths(source)
    return _read_pictures(paths, image_shape, grayscale), names
  expected = f"(n, {', '.join(map(str, image_shape))})"
  if image_shape[-1] == 1:
    expected += f" (or (n, {image_shape[0]}, {image_shape[1]}))"
  array = _read_array(source)
  if array.ndim == 0:
    raise AnoganError(f"{source} holds a single value (a 0-d array), not images; save an array of shape "
                      f"{expected}")
  shape = tuple(array.shape)
  if array.ndim == 3 and image_shape[-1] == 1:  # (n, h, w): one channel
    array = array[..., None]
  same_size = array.ndim == 4 and tuple(array.shape[1:3]) == image_shape[:2]
  colour_to_gray = same_size and array.shape[3] == 3 and image_shape[2] == 1
  if not same_size or (array.shape[3] != image_shape[2] and not (colour_to_gray and grayscale)):
    hint = "; for a single image add the first axis: x[None]" if shape in (
        image_shape, image_shape[:2] if image_shape[-1] == 1 else None) else ""
    fix = "pass --grayscale to convert them" if colour_to_gray else \
        "store images of that shape (or save them as picture files: pictures of any size are resized to the model's)"
    raise AnoganError(f"{source} holds an array of shape {shape} but the model expects {expected}; {fix}, or use a "
                      f"model trained on that shape{hint}")
  if array.dtype.kind not in "uif":
    raise AnoganError(f"{source} has dtype {array.dtype}; store uint8 pixels 0..255 or floats in [-1, 1]")
  names = [str(i) for i in range(len(array))]
  if len(array) == 0:
    raise AnoganError(f"{source} holds no images (its first axis has length 0)")
  if array.dtype.kind in "ui":
    if array.min() < 0 or array.max() > 255:
      raise AnoganError(f"integer images must be 0..255 pixels; {source} spans [{array.min()}, {array.max()}]")
    array = array.astype(np.float32) / 127.5 - 1.0
  else:
    array = array.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
    if len(bad):
      more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
      raise AnoganError(f"image {bad[0]}{more} of {source} contains NaN or inf; repair or drop those images")
    if array.min() < -1.001 or array.max() > 1.001:
      raise AnoganError(f"float images must be scaled to [-1, 1]; {source} spans "
                        f"[{array.min():.3g}, {array.max():.3g}] "
                        "(use x / 127.5 - 1 for 0..255 pixels)")
  if colour_to_gray:  # with --grayscale
    array = _convert_array(array, image_shape)
  return array, names


def read_examples(source: str, example_shape: Tuple[int, ...]) -> Tuple[np.ndarray, List[str]]:
  """Examples that are not images (series (n, T, features), clips (n, T, h, w, c)) from an
  .npy/.npz array of floats in [-1, 1] of the model's example shape (without the last axis when
  it is 1), named by their index; else a one-line AnoganError."""
  if not source.lower().endswith((".npy", ".npz")):
    raise AnoganError(f"{source} is not an .npy/.npz file; this model scores arrays of shape "
                      f"(n, {', '.join(map(str, example_shape))}): save them with np.save(path, x)")
  array = _read_array(source)
  if array.dtype.kind not in "f":
    raise AnoganError(f"{source} has dtype {array.dtype}; store floats in [-1, 1]")
  from anogan_tf.models.base import check_images
  x = check_images(array, example_shape)
  return x, [str(i) for i in range(len(x))]


def read_series(source: str, example_shape: Tuple[int, ...], series_range=()) -> Tuple[np.ndarray, List[str]]:
  """Series (n, T, features) in [-1, 1] named by their index, from an .npy/.npz array ((n, T) or
  (n, T, features)) or a .csv/.tsv/.txt file (one univariate series a line, data.ucr.read_series_csv).
  With `series_range` (a workdir trained on --dataset=ucr records it) the values are the data's
  own, scaled as training scaled them (data.ucr.scale); without, they must already be in [-1, 1]."""
  from anogan_tf.data import ucr
  steps, features = example_shape
  if source.lower().endswith((".csv", ".tsv", ".txt")):
    if not os.path.isfile(source):
      raise AnoganError(f"{source} does not exist or is not a file; pass an existing .csv or .npy file as --input")
    array = ucr.read_series_csv(source)
    if features != 1:
      raise AnoganError(f"{source} holds univariate series but the model takes {features} values per step; save "
                        f"them as an .npy array of shape (n, {steps}, {features})")
  elif source.lower().endswith((".npy", ".npz")):
    array = _read_array(source)
    if array.dtype.kind not in "uif":
      raise AnoganError(f"{source} has dtype {array.dtype}; store the series' values as numbers")
  else:
    raise AnoganError(f"{source} is not an .npy/.npz or .csv file; this model scores series of shape "
                      f"(n, {steps}, {features}): save them with np.save(path, x) or one a line in a .csv")
  if series_range and np.isfinite(array).all():  # else check_images names what is wrong
    array = ucr.scale(array, *series_range)
  from anogan_tf.models.base import check_images
  x = check_images(array, example_shape)
  return x, [str(i) for i in range(len(x))]


# --- the output folder

def check_output(output: str, files: Sequence[str]) -> None:
  """Read-only: `output` can be a folder here, and nothing is in the way of scores.csv and `files`
  (paths relative to it)."""
  check_folder_can_be_made(output, "--output", "--output")
  folders = set()
  for file in files:
    folder = os.path.dirname(file)
    while folder:
      folders.add(folder)
      folder = os.path.dirname(folder)
  for relative in sorted(folders):
    path = os.path.join(output, relative)
    if os.path.exists(path) and not os.path.isdir(path):
      raise AnoganError(f"{path} is a file, not a folder; move it away or choose another --output")
  for relative in [SCORES_CSV, *files]:
    path = os.path.join(output, relative)
    if os.path.isdir(path):
      raise AnoganError(f"{path} is a folder, where the output file goes; move it away or choose another --output")


def _folders(output: str, files: Sequence[str]) -> List[str]:
  return sorted({output} | {os.path.join(output, os.path.dirname(f)) for f in files})


def check_writable(output: str, files: Sequence[str]) -> None:
  """`check_output`, then a probe that files can be written where the output goes, creating
  nothing: an unnamed temporary file in the nearest existing folder of each output folder."""
  check_output(output, files)
  existing = set()
  for folder in _folders(output, files):
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


def _make_folders(output: str, files: Sequence[str]) -> None:
  try:
    for folder in _folders(output, files):
      os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise AnoganError(f"cannot write to --output {output} ({e.strerror}); choose a writable --output") from None


# --- scoring

@dataclasses.dataclass
class Scored:
  """What score_images wrote: per image (in input order) its name, score, decision, parts and
  report; the decision's threshold and note; the names shown in top.png, highest score first."""

  files: List[str]
  score: np.ndarray  # (N,)
  is_anomaly: Optional[np.ndarray]  # (N,) bool, or None without a threshold that applies
  parts: Dict[str, np.ndarray]
  reports: List[str]  # relative to the output folder
  decision: threshold.Decision
  top: List[str]


def _verdict(anomalous: Optional[bool], threshold_value: Optional[float]) -> str:
  if anomalous is None:
    return "no threshold"
  return f"{'ANOMALY' if anomalous else 'normal'} (threshold {threshold_value:.4g})"


def _short(name: str, width: int = 28) -> str:
  return name if len(name) <= width else "..." + name[-(width - 3):]


def score_images(config, workdir: str, source: str, output: str, progress: bool = True, top: int = DEFAULT_TOP,
                 resize: bool = False, grayscale: bool = False) -> Scored:
  """Scores the images at `source` with the workdir's `config.model` family and decides with its
  threshold (threshold.py); writes output/reports/<name>.png, output/top.png (the `top` highest
  scores; 0: none) and output/scores.csv, last. `resize` (no effect) / `grayscale`: see read_images."""
  if top < 0:
    raise AnoganError(f"--top={top} is below 0; use the number of most anomalous images to show, or 0 for none")
  check_output(output, [])  # at once, before reading what may be many images
  from tqdm import tqdm

  from anogan_tf import models
  from anogan_tf.engine.workdir import load_scorer
  from anogan_tf.visualization import plots
  family = models.family(config.model)
  shape = models.base.example_shape(family, config)
  if len(shape) == 3:
    images, names = read_images(source, shape, resize=resize, grayscale=grayscale)
  elif len(shape) == 2:
    images, names = read_series(source, shape, config.series_range)
  else:
    images, names = read_examples(source, shape)
  reports = [report_name(n) for n in names]
  scorer, networks = load_scorer(config, workdir, family)  # networks: the threshold's digests too
  if tuple(scorer.example_shape) != shape:
    raise AnoganError(f"the networks in {workdir} take {tuple(scorer.example_shape)} images, not the "
                      f"{shape} of --dataset={config.dataset}; keep --dataset as the workdir's flags.txt has it")
  decision = threshold.decide(config, workdir, scorer.settings(), networks)
  check_writable(output, reports + [TOP_GALLERY])

  chunks = []
  with tqdm(total=len(images), desc="score", unit="img", disable=not progress) as bar:
    for chunk in scorer.score_chunks(images):
      chunks.append(chunk)
      bar.update(len(chunk))
  result = ScoreResult.concatenate(chunks)
  anomalous = decision.is_anomaly(result.score)
  order = sorted(range(len(names)), key=lambda i: (-result.score[i], names[i]))  # most anomalous first
  shown = order[:top]

  _make_folders(output, reports)
  scores_path = os.path.join(output, SCORES_CSV)
  if os.path.exists(scores_path):
    os.remove(scores_path)  # output is incomplete until the new one is written, last
  verdicts = [_verdict(None if anomalous is None else bool(anomalous[i]), decision.threshold)
              for i in range(len(names))]
  titles = [f"{name}\nscore {result.score[i]:.4g}: {verdicts[i]}"
            + (f"   [{', '.join(f'{k} {v[i]:.4g}' for k, v in result.parts.items())}]" if result.parts else "")
            for i, name in enumerate(names)]
  gallery = os.path.join(output, TOP_GALLERY)
  series = images.ndim == 3
  if series:  # each series with its reconstruction, and the residual over time
    plots.series_reports(images, result.reconstruction, result.residual_map, titles,
                         [os.path.join(output, r) for r in reports], plots.series_residual_scale(result.residual_map))
  else:  # images as they are; other examples as the pictures that show them (plots.as_pictures)
    pictures, reconstructions, residual_maps = plots.as_pictures(images, result.reconstruction, result.residual_map)
    vmax = plots.residual_scale(residual_maps)
    plots.score_reports(pictures, reconstructions, residual_maps, titles,
                        [os.path.join(output, r) for r in reports], vmax, scorer.residual_is_error)
  if shown and series:
    plots.series_gallery(images[shown], result.reconstruction[shown], result.residual_map[shown],
                         [f"{rank}. {_short(names[i])}\nscore {result.score[i]:.4g}\n{verdicts[i].split(' (')[0]}"
                          for rank, i in enumerate(shown, start=1)], gallery, columns=5)
  elif shown:
    plots.top_gallery(pictures[shown], residual_maps[shown],
                      [f"{rank}. {_short(names[i])}\nscore {result.score[i]:.4g}\n{verdicts[i].split(' (')[0]}"
                       for rank, i in enumerate(shown, start=1)], gallery, vmax, len(names),
                      heading=f"the {len(shown)} highest scores of {len(names)} images"
                      + ("" if decision.threshold is None else f"; threshold {decision.threshold:.4g}"),
                      residual_is_error=scorer.residual_is_error)
  elif os.path.exists(gallery):
    os.remove(gallery)  # a previous run's: not of these images
  is_anomaly = [""] * len(names) if anomalous is None else [str(int(a)) for a in anomalous]
  write_scores_csv(scores_path, ("file", "score", "is_anomaly") + tuple(result.parts) + ("report",),
                   [(n, exact(s), a, *(exact(v) for v in values), r) for n, s, a, r, *values in
                    zip(names, result.score, is_anomaly, reports, *result.parts.values())])
  return Scored(files=names, score=result.score, is_anomaly=anomalous, parts=result.parts, reports=reports,
                decision=decision, top=[names[i] for i in shown])
