"""DRAEM's simulated anomalies (the authors' data_loader.py and perlin.py), as TensorFlow ops that
trace inside the driver's compiled train step, from uniform numbers the family's `noise` hook
draws (one row per training picture, from the epoch's seeded generator): the same rows give the
same anomalies, so a resumed run equals an uninterrupted one.

Per picture, as the authors' loader:
- with probability 1 - anomaly_fraction (the authors: 0.5) the picture stays as it is, mask 0;
- else a Perlin-noise mask: Perlin noise on a lattice of 2^a x 2^b cells (a, b uniform, up to
  side / --draem_perlin_min_cell cells: the authors' 2^0..2^5 at 256 pixels, cells down to 8
  pixels), rotated by an angle in [-90, 90) degrees, thresholded at --draem_perlin_threshold;
- an anomaly source picture, then three of nine colour changes chosen at random (the authors'
  imgaug list without Equalize: gamma per channel, brightness, sharpness, hue and saturation,
  solarize, posterize, invert, autocontrast, contrast);
- the source blended in inside the mask with the original's opacity beta in [0, beta_max) (the
  authors: 0.8): augmented = x (1 - m) + (1 - beta) source m + beta x m.

With --draem_smooth_fraction (0: never, as the authors) a share of the anomalies is painted instead
from the picture itself smoothed in place (not moved, not recoloured): mean-filtered over 3 to 17
pixels or flattened to its mean colour, what an out-of-focus or worn region and a missing patch of
texture look like, which no pasted source resembles. Where that changes nothing visible (a flat
region) the mask is cleared, so a flat region is never a target.

With --draem_scar_fraction (0: never, as the authors) a share of the anomalies gets, instead of the
Perlin blob, a mask of one to three thin straight strokes (after CutPaste's "scar", Li et al. 2021):
each 1 to side/21 pixels wide (1 to 3 at 64 pixels), 15% to 60% of the side long, at a random place
and angle; scratches, cracks and threads are thin and straight, which no thresholded Perlin noise is.
The source painted inside is chosen as for a blob.

With --draem_flat_fraction (0: never, as the authors) a share of the other anomalies (not smoothed)
is painted in one flat colour, uniform per channel and not recoloured: paint, stains, specks and
missing material are flat, which no textured source is.

With --draem_rotate_fraction (0: never; the authors' loader: 0.3) a share of the training pictures is
first turned by an angle in [-90, 90) degrees about its centre (bilinear), before any anomaly: the
picture to reconstruct and the one altered are the turned picture. The authors fill the corners
with black; here they are the picture reflected at its borders, so that no training picture shows
black corners a test picture never has (textures and most objects look the same turned).

With --draem_dihedral_fraction (0: never; not the authors') a share of the training pictures is
turned by a multiple of 90 degrees and maybe mirrored, exactly (no interpolation, which smooths a
picture as a blur anomaly does), before any anomaly: for pictures whose every orientation is
normal (textures, most objects seen from above), up to eight times the variety of a few hundred
crops, so the networks cannot memorise which crops they were shown.

The source is NEVER another photograph or dataset (the authors paste textures from DTD; a user has
only their own pictures, and a detector must not have seen the kind of defect it is tested on):
with probability texture_fraction a synthetic texture (smooth coloured Perlin noise, stripes or a
checkerboard between two random colours), else a training picture itself (this one or its
neighbour in the batch), moved (rolled), rotated by a multiple of 90 degrees and maybe mirrored.

The Perlin lattice repeats every 2 x res cells, so the rotated image (within 1.42 x res cells of
its centre) never sees the repetition; a period is what lets rotation and any lattice size share
one table of (2 * max_res)^2 gradient angles per field.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

# One row of the noise: these uniform numbers, then two tables of Perlin gradient angles (the
# mask's field and the texture's field), each (2 * max_res)^2.
SCALARS = ("altered", "use_texture", "other_picture", "res_y", "res_x", "angle", "beta",
           "rot90", "flip", "shift_y", "shift_x",
           "texture_kind", "texture_res_y", "texture_res_x", "texture_angle", "frequency", "direction", "phase",
           "colour_a0", "colour_a1", "colour_a2", "colour_b0", "colour_b1", "colour_b2",
           "gamma0", "gamma1", "gamma2", "brightness_mul", "brightness_add", "sharpness", "saturation", "hue",
           "solarize", "posterize", "contrast")
COLOUR_OPS = ("gamma", "brightness", "sharpness", "hue_saturation", "solarize", "posterize", "invert",
              "autocontrast", "contrast")
OPS_CHOSEN = 3  # the authors' randAugmenter: three of the augmenters, in a random order (here: the listed order)
TEXTURE_KINDS = 3  # smooth coloured noise, stripes, checkerboard
# Appended to a row only when smooth_fraction > 0 (so the rows without it stay as they were).
SMOOTH_SCALARS = ("use_smooth", "smooth_level")
SMOOTH_WINDOWS = (3, 5, 9, 17)  # mean filters of the smoothed source; one more level: the picture's mean colour
SMOOTH_VISIBLE = 0.04  # a smoothed pixel's change (pictures in [-1, 1], 3x3 mean) below this is no anomaly
# Appended after those only when scar_fraction > 0: whether the mask is strokes, how many, and each stroke's
# centre, angle, length and width.
SCARS = 3
SCAR_SCALARS = ("use_scar", "scar_count") + tuple(f"scar{k}_{part}" for k in range(SCARS)
                                                  for part in ("y", "x", "angle", "length", "width"))
SCAR_LENGTH = (0.15, 0.6)  # shares of the side
SCAR_WIDTH_PER_SIDE = 1.0 / 21.0  # the widest stroke: 3 pixels at 64 (at least 1)
# Appended after those only when rotate_fraction > 0: whether the picture is turned, and the angle.
ROTATE_SCALARS = ("use_rotation", "rotation_angle")
# Appended after those only when flat_fraction > 0 (the flat colour is the texture's first colour).
FLAT_SCALARS = ("use_flat",)
# Appended after those only when dihedral_fraction > 0: whether the picture is turned or mirrored, and which way.
DIHEDRAL_SCALARS = ("use_dihedral", "dihedral")
DIHEDRAL_ELEMENTS = 8  # k quarter turns (0 to 3), then mirrored left-right or not


def turn_and_mirror(x, quarters, mirrored):
  """Each picture of x (batch, side, side, c) turned by its `quarters` (int, 0 to 3) quarter turns
  counter-clockwise (tf.image.rot90's), then mirrored left-right where `mirrored` (bool): exactly."""
  out = x
  for k in (1, 2, 3):
    out = tf.where(tf.equal(quarters, k)[:, None, None, None], tf.image.rot90(x, k), out)
  return tf.where(mirrored[:, None, None, None], tf.reverse(out, axis=[2]), out)


@dataclasses.dataclass(frozen=True)
class Synthesis:
  """The settings of the simulated anomalies for pictures of `side` x `side` pixels."""

  side: int
  channels: int
  anomaly_fraction: float = 0.5
  texture_fraction: float = 0.5
  threshold: float = 0.5
  beta_max: float = 0.8
  min_cell: int = 8
  smooth_fraction: float = 0.0
  scar_fraction: float = 0.0
  rotate_fraction: float = 0.0
  flat_fraction: float = 0.0
  dihedral_fraction: float = 0.0

  @property
  def max_res(self) -> int:
    """The finest Perlin lattice: side / min_cell cells per side, a power of two, at least 1."""
    return 2 ** max(0, int(math.floor(math.log2(max(self.side / self.min_cell, 1)) + 1e-9)))

  @property
  def levels(self) -> int:
    """The lattice sizes 1, 2, 4, ..., max_res: how many."""
    return int(round(math.log2(self.max_res))) + 1

  @property
  def period(self) -> int:
    return 2 * self.max_res

  @property
  def row_size(self) -> int:
    return (len(SCALARS) + len(COLOUR_OPS) + 2 * self.period ** 2 + (len(SMOOTH_SCALARS) if self.smooth_fraction else 0)
            + (len(SCAR_SCALARS) if self.scar_fraction else 0) + (len(ROTATE_SCALARS) if self.rotate_fraction else 0)
            + (len(FLAT_SCALARS) if self.flat_fraction else 0)
            + (len(DIHEDRAL_SCALARS) if self.dihedral_fraction else 0))

  def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, row_size) float32 uniform numbers in [0, 1): what `simulate` turns into anomalies."""
    return rng.random((n, self.row_size), dtype=np.float32)

  def fields(self, u) -> dict:
    """The named columns of noise rows u (batch, row_size): scalars (batch,), `ops` (batch, 9),
    `mask_angles` and `texture_angles` (batch, period^2)."""
    out = {name: u[:, i] for i, name in enumerate(SCALARS)}
    at = len(SCALARS)
    out["ops"] = u[:, at:at + len(COLOUR_OPS)]
    at += len(COLOUR_OPS)
    cells = self.period ** 2
    out["mask_angles"], out["texture_angles"] = u[:, at:at + cells], u[:, at + cells:at + 2 * cells]
    at += 2 * cells
    if self.smooth_fraction:
      out.update({name: u[:, at + i] for i, name in enumerate(SMOOTH_SCALARS)})
      at += len(SMOOTH_SCALARS)
    if self.scar_fraction:
      out.update({name: u[:, at + i] for i, name in enumerate(SCAR_SCALARS)})
      at += len(SCAR_SCALARS)
    if self.rotate_fraction:
      out.update({name: u[:, at + i] for i, name in enumerate(ROTATE_SCALARS)})
      at += len(ROTATE_SCALARS)
    if self.flat_fraction:
      out.update({name: u[:, at + i] for i, name in enumerate(FLAT_SCALARS)})
      at += len(FLAT_SCALARS)
    if self.dihedral_fraction:
      out.update({name: u[:, at + i] for i, name in enumerate(DIHEDRAL_SCALARS)})
    return out

  def resolution(self, u):
    """Lattice cells per side, 2^k with k uniform in 0..levels-1, from uniforms u (batch,)."""
    k = tf.minimum(tf.floor(u * self.levels), self.levels - 1)
    return tf.pow(2.0, k)

  def perlin(self, res_y, res_x, angle, angles):
    """Perlin noise (batch, side, side), about within [-1, 1] (the authors' rand_perlin_2d: sqrt(2)
    times the interpolated gradient dot products with the fade 6t^5 - 15t^4 + 10t^3), on lattices
    of res_y x res_x cells (batch,), rotated by `angle` (batch,) radians about the centre,
    gradients at angles 2 pi `angles` (batch, period^2), periodic every 2 res cells."""
    side, period = self.side, self.period
    i = tf.range(side, dtype=tf.float32)
    yy, xx = tf.meshgrid(i, i, indexing="ij")
    centre = side / 2.0
    cos, sin = tf.cos(angle)[:, None, None], tf.sin(angle)[:, None, None]
    ry = (yy - centre) * cos - (xx - centre) * sin + centre
    rx = (yy - centre) * sin + (xx - centre) * cos + centre
    res_y, res_x = res_y[:, None, None], res_x[:, None, None]
    gy, gx = ry * res_y / side, rx * res_x / side
    y0, x0 = tf.floor(gy), tf.floor(gx)
    fy, fx = gy - y0, gx - x0
    batch = tf.shape(angles)[0]
    theta = 2.0 * math.pi * angles

    def corner(dy, dx):
      iy = tf.math.floormod(y0 + dy, 2.0 * res_y)
      ix = tf.math.floormod(x0 + dx, 2.0 * res_x)
      index = tf.reshape(tf.cast(iy * period + ix, tf.int32), (batch, -1))
      a = tf.reshape(tf.gather(theta, index, batch_dims=1), (batch, side, side))
      return tf.cos(a) * (fy - dy) + tf.sin(a) * (fx - dx)

    def fade(t):
      return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)

    ty, tx = fade(fy), fade(fx)
    n00, n10, n01, n11 = corner(0.0, 0.0), corner(1.0, 0.0), corner(0.0, 1.0), corner(1.0, 1.0)
    top = n00 + ty * (n10 - n00)
    bottom = n01 + ty * (n11 - n01)
    return math.sqrt(2.0) * (top + tx * (bottom - top))

  def mask(self, f):
    """The Perlin mask (batch, side, side, 1) in {0, 1} of every row, altered or not."""
    angle = (f["angle"] - 0.5) * math.pi  # [-90, 90) degrees, the authors' rotation of the noise
    noise = self.perlin(self.resolution(f["res_y"]), self.resolution(f["res_x"]), angle, f["mask_angles"])
    return tf.cast(noise > self.threshold, tf.float32)[..., None]

  def scars(self, f):
    """The stroke masks (batch, side, side, 1) in {0, 1}: one to three straight strokes per row, the
    pixels within half a stroke's width of its segment."""
    side = self.side
    i = tf.range(side, dtype=tf.float32)
    yy, xx = tf.meshgrid(i, i, indexing="ij")
    count = tf.floor(f["scar_count"] * SCARS)[:, None, None]  # strokes beyond the first: 0, 1 or 2
    widest = max(1.0, side * SCAR_WIDTH_PER_SIDE)
    out = tf.zeros_like(f["scar_count"])[:, None, None] + tf.zeros((side, side))
    for k in range(SCARS):
      g = lambda part: f[f"scar{k}_{part}"][:, None, None]  # noqa: E731
      angle = math.pi * g("angle")
      dy, dx = tf.sin(angle), tf.cos(angle)
      half = 0.5 * side * (SCAR_LENGTH[0] + g("length") * (SCAR_LENGTH[1] - SCAR_LENGTH[0]))
      py, px = yy - g("y") * side, xx - g("x") * side
      t = tf.clip_by_value(py * dy + px * dx, -half, half)
      distance = tf.sqrt(tf.square(py - t * dy) + tf.square(px - t * dx))
      width = 1.0 + g("width") * (widest - 1.0)
      stroke = tf.cast(distance <= 0.5 * width, tf.float32) * tf.cast(count >= k, tf.float32)
      out = tf.maximum(out, stroke)
    return out[..., None]

  def own_picture(self, x01, f, neighbour=None):
    """The training picture itself or its neighbour in the batch (`neighbour`, default the previous
    picture of x01), rotated by k x 90 degrees, maybe mirrored, and rolled by a random shift:
    (batch, side, side, c) in [0, 1]."""
    neighbour = tf.roll(x01, 1, axis=0) if neighbour is None else neighbour
    source = tf.where((f["other_picture"] < 0.5)[:, None, None, None], x01, neighbour)
    k = tf.cast(tf.minimum(tf.floor(f["rot90"] * 4.0), 3.0), tf.int32)
    turned = turn_and_mirror(source, k, f["flip"] >= 0.5)
    side = self.side
    shift_y = tf.cast(tf.floor(f["shift_y"] * side), tf.int32)
    shift_x = tf.cast(tf.floor(f["shift_x"] * side), tf.int32)
    rows = tf.math.floormod(tf.range(side)[None, :] + shift_y[:, None], side)
    moved = tf.gather(turned, rows, axis=1, batch_dims=1)
    cols = tf.math.floormod(tf.range(side)[None, :] + shift_x[:, None], side)
    return tf.gather(moved, cols, axis=2, batch_dims=1)

  def smoothed(self, x, f):
    """The pictures x (batch, side, side, c) themselves, in place, mean-filtered over one of
    SMOOTH_WINDOWS pixels or (the last level) flat at their mean colour, the level per row."""
    levels = len(SMOOTH_WINDOWS) + 1
    level = tf.minimum(tf.floor(f["smooth_level"] * levels), levels - 1.0)[:, None, None, None]
    out = tf.broadcast_to(tf.reduce_mean(x, axis=(1, 2), keepdims=True), tf.shape(x))
    for i, window in enumerate(SMOOTH_WINDOWS):
      out = tf.where(tf.equal(level, float(i)), tf.nn.avg_pool2d(x, window, 1, "SAME"), out)
    return out

  def texture(self, f):
    """A synthetic texture (batch, side, side, c) in [0, 1]: between two random colours, smooth
    Perlin noise, stripes or a checkerboard at a random frequency and direction."""
    side = self.side
    angle = (f["texture_angle"] - 0.5) * math.pi
    smooth = self.perlin(self.resolution(f["texture_res_y"]), self.resolution(f["texture_res_x"]), angle,
                         f["texture_angles"])
    smooth = tf.clip_by_value(0.5 + 0.5 * smooth, 0.0, 1.0)
    i = tf.range(side, dtype=tf.float32)
    yy, xx = tf.meshgrid(i, i, indexing="ij")
    direction = math.pi * f["direction"][:, None, None]
    cycles = (1.0 + f["frequency"] * (side / 4.0 - 1.0))[:, None, None] / side
    phase = 2.0 * math.pi * f["phase"][:, None, None]
    along = 2.0 * math.pi * cycles * (xx * tf.cos(direction) + yy * tf.sin(direction)) + phase
    across = 2.0 * math.pi * cycles * (xx * -tf.sin(direction) + yy * tf.cos(direction)) + phase
    stripes = 0.5 + 0.5 * tf.sin(along)
    checker = tf.cast(tf.sin(along) * tf.sin(across) > 0, tf.float32)
    kind = tf.minimum(tf.floor(f["texture_kind"] * TEXTURE_KINDS), TEXTURE_KINDS - 1.0)[:, None, None]
    pattern = tf.where(kind < 1, smooth, tf.where(kind < 2, stripes, checker))[..., None]
    colour_a, colour_b = self.colour(f, "a"), self.colour(f, "b")
    return colour_a + pattern * (colour_b - colour_a)

  def colour(self, f, which: str):
    """The rows' colour `which` ("a" or "b"), (batch, 1, 1, channels) in [0, 1]."""
    return tf.stack([f[f"colour_{which}{j}"] for j in range(self.channels)], axis=-1)[:, None, None, :]

  def recolour(self, y, f):
    """Three of COLOUR_OPS, chosen per row (the three smallest of its `ops` uniforms), applied in
    the listed order to y (batch, side, side, c) in [0, 1]."""
    ops = f["ops"]
    third = tf.sort(ops, axis=1)[:, OPS_CHOSEN - 1:OPS_CHOSEN]
    chosen = ops <= third  # (batch, 9)
    c = self.channels
    b = lambda name: f[name][:, None, None, None]  # noqa: E731

    def gamma(y):
      g = tf.stack([f[f"gamma{j}"] for j in range(c)], axis=-1)[:, None, None, :]
      return tf.pow(tf.maximum(y, 1e-6), tf.exp((g - 0.5) * 2.0 * math.log(2.0)))  # gamma in [0.5, 2]

    def brightness(y):
      return y * (0.8 + 0.4 * b("brightness_mul")) + (b("brightness_add") - 0.5) * 60.0 / 255.0

    def sharpness(y):
      blurred = tf.nn.avg_pool2d(y, 3, 1, "SAME")
      return y + 2.0 * b("sharpness") * (y - blurred)

    def hue_saturation(y):
      grey = tf.reduce_mean(y, axis=-1, keepdims=True)
      saturated = grey + 2.0 * b("saturation") * (y - grey)
      if c == 1:
        return saturated
      shifted = tf.roll(saturated, 1, axis=-1)
      return saturated + b("hue") * (shifted - saturated)

    def solarize(y):
      return tf.where(y > (32.0 + 96.0 * b("solarize")) / 255.0, 1.0 - y, y)

    def posterize(y):
      levels = tf.pow(2.0, 1.0 + tf.floor(b("posterize") * 6.0))  # 1 to 6 bits
      return tf.floor(y * levels) / levels

    def invert(y):
      return 1.0 - y

    def autocontrast(y):
      low = tf.reduce_min(y, axis=(1, 2), keepdims=True)
      high = tf.reduce_max(y, axis=(1, 2), keepdims=True)
      return (y - low) / tf.maximum(high - low, 1e-3)

    def contrast(y):
      mean = tf.reduce_mean(y, axis=(1, 2, 3), keepdims=True)
      return mean + (0.5 + b("contrast")) * (y - mean)

    for j, op in enumerate((gamma, brightness, sharpness, hue_saturation, solarize, posterize, invert,
                            autocontrast, contrast)):
      y = tf.where(chosen[:, j][:, None, None, None], tf.clip_by_value(op(y), 0.0, 1.0), y)
    return y

  def rotated(self, x, u):
    """The pictures x (batch, side, side, c) to train on: a rotate_fraction share of them (by their
    rows u) turned about the centre by an angle in [-90, 90) degrees, bilinear, reflected at the
    borders; then a dihedral_fraction share turned by k quarter turns (k in 0..3) and maybe mirrored
    left-right, the eight ways equally likely, exactly (no interpolation); the others (and all of
    them at both fractions 0) exactly as they are."""
    if not self.rotate_fraction and not self.dihedral_fraction:
      return x
    f = self.fields(u)
    if self.rotate_fraction:
      x = self.turned(x, f)
    if self.dihedral_fraction:
      x = self.dihedral(x, f)
    return x

  def turned(self, x, f):
    """x with the rows of f that rotate_fraction chooses turned by their angle (see `rotated`)."""
    turn = f["use_rotation"] < self.rotate_fraction
    angle = (f["rotation_angle"] - 0.5) * math.pi
    cos, sin, centre = tf.cos(angle), tf.sin(angle), (self.side - 1) / 2.0
    # Each output pixel (col, row) reads the input at R(angle) (col - centre, row - centre) + centre.
    zero = tf.zeros_like(angle)
    transforms = tf.stack([cos, -sin, centre - centre * cos + centre * sin,
                           sin, cos, centre - centre * sin - centre * cos, zero, zero], axis=1)
    turned = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    return tf.where(turn[:, None, None, None], turned, x)

  def dihedral(self, x, f):
    """x with the rows of f that dihedral_fraction chooses turned by k quarter turns
    (counter-clockwise, as tf.image.rot90) and, for the elements 4 to 7, then mirrored left-right."""
    chosen = f["use_dihedral"] < self.dihedral_fraction
    element = tf.cast(tf.minimum(tf.floor(f["dihedral"] * DIHEDRAL_ELEMENTS), DIHEDRAL_ELEMENTS - 1.0), tf.int32)
    element = tf.where(chosen, element, 0)
    return turn_and_mirror(x, element % 4, element >= 4)

  def simulate(self, x, u):
    """(augmented pictures, masks): x (batch, side, side, c) in [-1, 1] with anomalies pasted
    inside Perlin masks as the module docstring says; masks (batch, side, side, 1) in {0, 1}, 0
    everywhere for the pictures left as they are. u: the rows of `noise`.

    Each picture's anomaly depends on its own row alone (and on its neighbour in the batch, for an
    own source), so the batch is split by what its rows paint: pictures left as they are, smoothed
    in place, a synthetic texture, their own or their neighbour's picture, one flat colour. Each
    part is computed on its pictures only (the synthesis costs what the altered pictures need, not
    every kind for every picture; the same numbers up to float32 rounding, whose last bit can
    depend on a tensor's size) and the parts are put back in batch order."""
    f = self.fields(u)
    n = tf.shape(x)[0]
    neighbour = tf.roll((x + 1.0) / 2.0, 1, axis=0)  # an own source's "other picture": in the whole batch
    altered = f["altered"] < self.anomaly_fraction
    smooth = f["use_smooth"] < self.smooth_fraction if self.smooth_fraction else tf.zeros_like(altered)
    flat = f["use_flat"] < self.flat_fraction if self.flat_fraction else tf.zeros_like(altered)
    texture = f["use_texture"] < self.texture_fraction
    kind = tf.where(~altered, 0, tf.where(smooth, 1, tf.where(flat, 4, tf.where(texture, 2, 3))))
    rows = tf.dynamic_partition(tf.range(n), kind, 5)  # left as they are, smoothed, texture, own picture, flat
    left = tf.gather(x, rows[0])
    parts = [(left, tf.zeros_like(left[..., :1]))]
    for k in (1, 2, 3, 4):
      fk = self.fields(tf.gather(u, rows[k]))  # its noise rows: one gather, not one per column
      xk = tf.gather(x, rows[k])
      if (k == 1 and not self.smooth_fraction) or (k == 4 and not self.flat_fraction):  # no row is of this kind
        parts.append((xk, tf.zeros_like(xk[..., :1])))
        continue
      if k == 1:
        source = self.smoothed(xk, fk)
      elif k == 2:
        source = self.recolour(self.texture(fk), fk) * 2.0 - 1.0
      elif k == 4:
        source = self.colour(fk, "a") * 2.0 - 1.0  # one colour per row, spread over the mask by paste
      else:
        source = self.recolour(self.own_picture((xk + 1.0) / 2.0, fk, tf.gather(neighbour, rows[k])), fk) * 2.0 - 1.0
      parts.append(self.paste(xk, source, fk, smoothed=k == 1))
    return tuple(tf.dynamic_stitch(rows, [part[j] for part in parts]) for j in (0, 1))

  def paste(self, x, source, f, smoothed: bool = False):
    """(augmented, mask) of altered pictures x (all of them altered) and their sources, both in
    [-1, 1]: the blob or strokes mask of each row, the source blended in inside it with the
    original's opacity beta; a smoothed source's mask is cleared where it changes nothing visible."""
    m = self.mask(f)
    if self.scar_fraction:
      m = tf.where((f["use_scar"] < self.scar_fraction)[:, None, None, None], self.scars(f), m)
    beta = (f["beta"] * self.beta_max)[:, None, None, None]
    if smoothed:
      change = tf.reduce_max(tf.abs((1.0 - beta) * (source - x)), axis=-1, keepdims=True)
      m = m * tf.cast(tf.nn.avg_pool2d(change, 3, 1, "SAME") > SMOOTH_VISIBLE, tf.float32)
    return x * (1.0 - m) + (1.0 - beta) * source * m + beta * x * m, m
