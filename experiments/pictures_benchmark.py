"""The picture benchmark: MVTec AD-style folders cut from photographs that ship inside packages.

  python experiments/pictures_benchmark.py --root=runs/pictures/data [--seed=0] [--size=64] [--train=300]

Needs scikit-image (`pip install -e .[pictures]`) beside scikit-learn; every photograph is a file inside
the installed wheels (no download): scikit-image's `skimage.data` brick, grass, gravel, coins, retina and
hubble_deep_field. scikit-learn's `load_sample_images` photographs (china.jpg, flower.jpg) are pasted into
pictures as foreign material (so is every other category's photograph), never used as a category: the
photo example (experiments/photo_example.py) already trains on china.jpg's foliage.

Categories (`CATEGORIES`): three grey textures (brick, grass, gravel), a colour texture with vessels
(retina: crops inside the fundus), and two of objects (coins: grey coins on a dark ground; hubble: colour
galaxies on black). Each photograph is split into three boxes that do not overlap: training crops come
from the first, validation crops from the second, test crops from the third, so no validation or test
picture shares a pixel of the photograph with a training picture. A crop is `crop` photograph pixels
square, resized to --size (bilinear with antialiasing) and flipped left-right half the time.

Each category root is the MVTec AD layout that `--dataset=folder` reads:

  ROOT/<category>/train/good/NNN.png                    --train normal crops
  ROOT/<category>/test/good/NNN.png                     --test_good normal crops of the test box
  ROOT/<category>/test/<defect>/NNN.png                 --test_defect crops of the test box per defect
  ROOT/<category>/ground_truth/<defect>/NNN_mask.png    the defect's pixels (255), else 0
  ROOT/<category>/validation/...                        the same from the validation box (--val_good,
                                                        --val_defect); its train/ links to ../train, so
                                                        `--data_dir=ROOT/<category>/validation` is a root too

Train on `ROOT/<category>`, evaluate with `--data_dir=ROOT/<category>/validation` (tuning) or
`ROOT/<category>` (the reported test split). Defects (`DEFECTS`), drawn on a normal crop of the
split's box, each with its mask:

  scratch  one to three straight strokes, 1 to 3 pixels wide (at 64 pixels), dark or bright
  blob     a filled ellipse of one colour far from the picture's mean, soft-edged (the edge in the mask)
  paste    a patch of ANOTHER photograph (another category's, or scikit-learn's china.jpg and flower.jpg),
           in an elliptical or rectangular outline, converted to the picture's channels
  blur     a Gaussian blur (sigma 2.5 at 64 pixels) inside an ellipse, where the picture varies most
  hole     a polygon filled with the picture's mean colour (missing texture), where the picture varies most

Sizes scale with --size (given at 64 pixels). Deterministic: the same --seed, --size and counts write
the same PNGs (one numpy Generator per category, seeded by (seed, category index)); the folder is
rebuilt from scratch, and ROOT/manifest.json records the settings and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Box = Tuple[int, int, int, int]  # left, top, right, bottom, in photograph pixels

# name -> (photograph, kind, crop side in photograph pixels, (train box, validation box, test box))
CATEGORIES = {
    "brick": ("skimage:brick", "texture", 64, ((0, 0, 320, 512), (320, 0, 416, 512), (416, 0, 512, 512))),
    "grass": ("skimage:grass", "texture", 64, ((0, 0, 320, 512), (320, 0, 416, 512), (416, 0, 512, 512))),
    "gravel": ("skimage:gravel", "texture", 64, ((0, 0, 320, 512), (320, 0, 416, 512), (416, 0, 512, 512))),
    "retina": ("skimage:retina", "texture", 128,
               ((250, 250, 830, 1160), (830, 250, 990, 1160), (990, 250, 1150, 1160))),
    "coins": ("skimage:coins", "object", 64, ((0, 0, 224, 303), (224, 0, 304, 303), (304, 0, 384, 303))),
    "hubble": ("skimage:hubble_deep_field", "object", 96,
               ((0, 0, 600, 872), (600, 0, 800, 872), (800, 0, 1000, 872))),
}
FOREIGN = ("sklearn:china.jpg", "sklearn:flower.jpg")  # pasted only
DEFECTS = ("scratch", "blob", "paste", "blur", "hole")
SPLITS = {"train": 0, "validation": 1, "test": 2}  # -> index of the box


def photograph(name: str) -> np.ndarray:
  """uint8 (h, w) or (h, w, 3) of 'skimage:<function>' or 'sklearn:<file name>'."""
  source, what = name.split(":")
  if source == "sklearn":
    from sklearn.datasets import load_sample_images
    data = load_sample_images()
    return {os.path.basename(f): im for f, im in zip(data.filenames, data.images)}[what]
  try:
    from skimage import data
  except ImportError:
    raise SystemExit("error: the picture benchmark needs scikit-image; pip install -e .[pictures]") from None
  return np.asarray(getattr(data, what)(), np.uint8)


def crop(photo: np.ndarray, box: Box, side: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """A random side x side crop inside box, resized to size x size, flipped left-right half the time."""
  left, top, right, bottom = box
  x = int(rng.integers(left, right - side + 1))
  y = int(rng.integers(top, bottom - side + 1))
  picture = Image.fromarray(photo[y:y + side, x:x + side])
  if side != size:
    picture = picture.resize((size, size), Image.BILINEAR)
  if rng.random() < 0.5:
    picture = picture.transpose(Image.FLIP_LEFT_RIGHT)
  return np.asarray(picture)


# --- defects: (picture, rng, ...) -> (defective picture, bool mask)

def _as_pil(picture: np.ndarray) -> Image.Image:
  return Image.fromarray(picture)


def _ellipse_mask(size: int, centre, radii) -> np.ndarray:
  yy, xx = np.mgrid[:size, :size]
  return ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1.0


def _busiest(picture: np.ndarray, radius: int, rng, tries: int = 12):
  """Of a few random centres (radius from the border), the one whose neighbourhood varies most."""
  size = picture.shape[0]
  grey = picture.astype(float) if picture.ndim == 2 else picture.astype(float).mean(-1)
  best, best_std = None, -1.0
  for _ in range(tries):
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, 2))
    std = grey[cy - radius:cy + radius, cx - radius:cx + radius].std()
    if std > best_std:
      best, best_std = (cx, cy), std
  return best


def _far_colour(picture: np.ndarray, rng) -> Tuple[int, ...]:
  """A colour at least 90 (of 255) from the picture's mean in some channel."""
  mean = picture.reshape(-1, 1 if picture.ndim == 2 else 3).mean(0)
  while True:
    colour = rng.integers(0, 256, len(mean))
    if np.abs(colour - mean).max() >= 90:
      return tuple(int(c) for c in colour)


def scratch(picture, rng, s: float, **_):
  size = picture.shape[0]
  out, mask = _as_pil(picture), Image.new("L", (size, size), 0)
  draw, draw_mask = ImageDraw.Draw(out), ImageDraw.Draw(mask)
  mean = float(picture.mean())
  level = int(rng.integers(0, 40)) if mean > 110 else int(rng.integers(215, 256))  # dark on bright, or bright
  fill = level if picture.ndim == 2 else (level, level, level)
  for _ in range(int(rng.integers(1, 4))):
    x0, y0 = rng.uniform(0.1, 0.9, 2) * size
    angle, length = rng.uniform(0, np.pi), rng.uniform(0.3, 0.6) * size
    x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
    width = max(1, int(round(rng.integers(1, 4) * s)))
    draw.line([(x0, y0), (x1, y1)], fill=fill, width=width)
    draw_mask.line([(x0, y0), (x1, y1)], fill=255, width=width)
  return np.asarray(out), np.asarray(mask) > 0


def blob(picture, rng, s: float, **_):
  size = picture.shape[0]
  radii = rng.uniform(4, 11, 2) * s
  centre = rng.uniform(radii.max() + 2, size - radii.max() - 2, 2)
  mask = _ellipse_mask(size, centre, radii)
  soft = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(s)), float) / 255
  soft[soft < 0.15] = 0.0  # the faint rim is left out: every changed pixel is in the mask
  colour = np.array(_far_colour(picture, rng), float)
  weight = soft if picture.ndim == 2 else soft[..., None]
  out = picture.astype(float) * (1 - weight) + colour * weight
  return np.clip(np.round(out), 0, 255).astype(np.uint8), soft > 0


def paste(picture, rng, s: float, foreign: List[np.ndarray], **_):
  size = picture.shape[0]
  source = foreign[int(rng.integers(len(foreign)))]
  h, w = (int(v) for v in rng.uniform(10, 24, 2) * s)
  sy, sx = int(rng.integers(0, source.shape[0] - h + 1)), int(rng.integers(0, source.shape[1] - w + 1))
  patch = Image.fromarray(source[sy:sy + h, sx:sx + w]).convert("L" if picture.ndim == 2 else "RGB")
  y, x = int(rng.integers(2, size - h - 1)), int(rng.integers(2, size - w - 1))
  if rng.random() < 0.5:
    shape = np.ones((h, w), bool)
  else:
    shape = _ellipse_mask(max(h, w), (w / 2 - 0.5, h / 2 - 0.5), (w / 2, h / 2))[:h, :w]
  mask = np.zeros((size, size), bool)
  mask[y:y + h, x:x + w] = shape
  out = picture.copy()
  out[y:y + h, x:x + w][shape] = np.asarray(patch)[shape]
  return out, mask


def blur(picture, rng, s: float, **_):
  size = picture.shape[0]
  radii = rng.uniform(7, 14, 2) * s
  centre = _busiest(picture, int(radii.max()) + 1, rng)
  mask = _ellipse_mask(size, centre, radii)
  blurred = np.asarray(_as_pil(picture).filter(ImageFilter.GaussianBlur(2.5 * s)))
  out = picture.copy()
  out[mask] = blurred[mask]
  return out, mask


def hole(picture, rng, s: float, **_):
  size = picture.shape[0]
  radius = rng.uniform(5, 11) * s
  cx, cy = _busiest(picture, int(radius) + 1, rng)
  angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
  points = [(cx + radius * rng.uniform(0.6, 1.0) * np.cos(a), cy + radius * rng.uniform(0.6, 1.0) * np.sin(a))
            for a in angles]
  mask_image = Image.new("L", (size, size), 0)
  ImageDraw.Draw(mask_image).polygon(points, fill=255)
  mask = np.asarray(mask_image) > 0
  out = picture.copy()
  mean = picture.reshape(-1, 1 if picture.ndim == 2 else 3).mean(0)
  out[mask] = np.round(mean if picture.ndim == 3 else mean[0]).astype(np.uint8)
  return out, mask


DRAW = {"scratch": scratch, "blob": blob, "paste": paste, "blur": blur, "hole": hole}


# --- the folders

def build(root: str, seed: int = 0, size: int = 64, n_train: int = 300, test_good: int = 40, test_defect: int = 12,
          val_good: int = 20, val_defect: int = 8, categories=None) -> Dict:
  """Writes the benchmark under root (rebuilt from scratch); returns the manifest."""
  categories = list(categories or CATEGORIES)
  unknown = [c for c in categories if c not in CATEGORIES]
  if unknown:
    raise SystemExit(f"error: unknown category '{unknown[0]}'; use some of {', '.join(CATEGORIES)}")
  photos = {name: photograph(CATEGORIES[name][0]) for name in CATEGORIES}
  foreign_all = {name: photograph(name) for name in FOREIGN}
  s = size / 64.0
  if os.path.isdir(root):
    shutil.rmtree(root)
  manifest = {"script": "python experiments/pictures_benchmark.py", "seed": seed, "size": size,
              "defects": list(DEFECTS), "categories": {}}

  def save(array, *parts):
    path = os.path.join(root, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)

  for index, name in enumerate(CATEGORIES):
    if name not in categories:
      continue
    source, kind, side, boxes = CATEGORIES[name]
    photo = photos[name]
    rng = np.random.default_rng([seed, index])
    foreign = [p for other, p in photos.items() if other != name] + list(foreign_all.values())
    counts = {}
    for i in range(n_train):
      save(crop(photo, boxes[SPLITS["train"]], side, size, rng), name, "train", "good", f"{i:03d}.png")
    counts["train/good"] = n_train
    for split, n_good, n_defect in (("validation", val_good, val_defect), ("test", test_good, test_defect)):
      base = (name, "validation") if split == "validation" else (name,)
      box = boxes[SPLITS[split]]
      for i in range(n_good):
        save(crop(photo, box, side, size, rng), *base, "test", "good", f"{i:03d}.png")
      for defect in DEFECTS:
        for i in range(n_defect):
          picture, mask = DRAW[defect](crop(photo, box, side, size, rng), rng, s, foreign=foreign)
          save(picture, *base, "test", defect, f"{i:03d}.png")
          save(mask.astype(np.uint8) * 255, *base, "ground_truth", defect, f"{i:03d}_mask.png")
      counts[split] = {"good": n_good, **{d: n_defect for d in DEFECTS}}
    os.symlink(os.path.join("..", "train"), os.path.join(root, name, "validation", "train"))
    manifest["categories"][name] = {"photograph": source, "kind": kind, "crop": side,
                                    "boxes": dict(zip(SPLITS, boxes)), "counts": counts}
  with open(os.path.join(root, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=2)
    f.write("\n")
  return manifest


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="runs/pictures/data", help="where the category folders go")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--size", type=int, default=64, help="pixels of each written picture")
  parser.add_argument("--train", type=int, default=300, help="training crops per category")
  parser.add_argument("--test_good", type=int, default=40)
  parser.add_argument("--test_defect", type=int, default=12, help="test pictures per defect")
  parser.add_argument("--val_good", type=int, default=20)
  parser.add_argument("--val_defect", type=int, default=8, help="validation pictures per defect")
  parser.add_argument("--categories", default="", help="comma-separated (default: all)")
  args = parser.parse_args(argv)
  manifest = build(args.root, args.seed, args.size, args.train, args.test_good, args.test_defect, args.val_good,
                   args.val_defect, [c for c in args.categories.split(",") if c])
  for name, entry in manifest["categories"].items():
    print(f"{name}: {entry['counts']}")
  print(f"written to {args.root}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
