"""Moving MNIST (--dataset=moving_mnist), generated from MNIST as Srivastava et al. 2015 generate it,
for the one-class protocol on clips.

A clip: `clip_length` frames of 64 x 64 pixels, two 28-pixel MNIST digits, each starting at a
uniform position and moving in a uniform direction at a constant speed (STEP: 0.1 of the range a
digit's corner travels, 36 pixels, as their generator's step_length), bouncing off the edges
(the velocity component reversed, the position clipped), combined by the pixel-wise maximum.

One-class protocol (docs/sequences.md):
- normal clips: both digits of --normal_classes, moving as above. Training clips draw their digits
  from MNIST's train split, from --seed's stream; --train_examples clips (0: TRAIN_CLIPS), beside
  the share --val_fraction holds out.
- test clips: MNIST's test split, from a stream of their own (the same test clips for every
  --seed): TEST_CLIPS clips, half normal, the other half the KINDS of anomaly in equal shares.
  From a random frame t0 (in [clip_length / 4, 3 clip_length / 4)) on, one digit:
    new_digit  is swapped for a digit of a class not in --normal_classes (same motion);
    stop       stands still (frames t0.. repeat frame t0 - 1's position);
    jump       jumps to a random place at least JUMP_MIN pixels away, then moves on as before;
    fast       moves at FAST times its speed (bouncing as before).
  Frame labels: 1 from t0 on, except for a jump: only frame t0, the one discontinuous frame
  (after it the motion is normal again). The clip's label: any abnormal frame.
- --eval_split=val: the held-out normal training clips (--val_fraction) and as many anomalous
  clips generated from MNIST's train split, as the test clips are.

Positions are floats, rounded to whole pixels when a digit is drawn; a digit always lies wholly
inside the frame. --image_size other than 64 resizes the frames after generating them.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from anogan_tf.data.arrays import load_arrays, resize_images, source_name, to_float_images
from anogan_tf.data.splits import OneClassData, test_subset, validation_split
from anogan_tf.errors import AnoganError

SIZE = 64  # frame side (pixels)
STEP = 0.1  # per frame, as a share of the range (SIZE - digit side) a digit moves in
TRAIN_CLIPS = 1000  # normal training clips when --train_examples is 0
TEST_CLIPS = 600  # test clips (half normal); --test_examples takes a seeded subset
KINDS = ("new_digit", "stop", "jump", "fast")  # the kinds of anomaly, each a class of the test clips
NORMAL = "normal"
FAST = 3.0  # speed-up of a "fast" digit
JUMP_MIN = 16.0  # pixels a jumping digit moves at least, in one frame
TEST_STREAM = 20150101  # the test clips' own seed: the same for every --seed
VAL_STREAM = 31  # the validation anomalies' stream, beside --seed


def trajectory(rng: np.random.Generator, length: int, room: float, kind: str = NORMAL, t0: int = 0) -> np.ndarray:
  """(length, 2) top-left corners (y, x) in [0, room] of one digit's path: a uniform start and
  direction, a step of STEP * room per frame, bouncing off the edges; from frame t0 on changed
  as `kind` says (stop, jump, fast; any other kind moves normally)."""
  position = rng.uniform(0, room, 2)
  theta = rng.uniform(0, 2 * np.pi)
  velocity = STEP * room * np.array([np.sin(theta), np.cos(theta)])
  path = np.zeros((length, 2))
  for t in range(length):
    if t > 0 and kind == "jump" and t == t0:  # in place of this frame's step: far from the frame before
      position = _jump(rng, position, room)
    elif t > 0:
      speed = FAST if kind == "fast" and t >= t0 else 1.0
      if not (kind == "stop" and t >= t0):
        position = position + speed * velocity
      for axis in range(2):  # bounce: reverse the component, stay inside the frame
        if position[axis] < 0:
          position[axis], velocity[axis] = -position[axis], -velocity[axis]
        if position[axis] > room:
          position[axis], velocity[axis] = 2 * room - position[axis], -velocity[axis]
      position = np.clip(position, 0, room)
    path[t] = position
  return path


def _jump(rng: np.random.Generator, position: np.ndarray, room: float) -> np.ndarray:
  """A uniform place in [0, room]^2 at least JUMP_MIN (or as far as the frame allows) from `position`."""
  far = min(JUMP_MIN, 0.5 * room)
  for _ in range(1000):
    to = rng.uniform(0, room, 2)
    if np.hypot(*(to - position)) >= far:
      return to
  return np.where(position < room / 2, room, 0.0)  # the far corner


def render(digits: np.ndarray, paths: np.ndarray, size: int = SIZE) -> np.ndarray:
  """Frames (T, size, size) uint8: digits[k] (T, s, s) drawn at paths[k] (T, 2), rounded to whole
  pixels, combined by the pixel-wise maximum."""
  length, side = paths.shape[1], digits.shape[-1]
  frames = np.zeros((length, size, size), np.uint8)
  for frames_of_digit, path in zip(digits, paths):
    for t in range(length):
      y, x = (int(round(v)) for v in path[t])
      window = frames[t, y:y + side, x:x + side]
      np.maximum(window, frames_of_digit[t], out=window)
  return frames


def make_clip(rng: np.random.Generator, normal_digits: np.ndarray, other_digits: np.ndarray, length: int,
              kind: str = NORMAL, size: int = SIZE) -> Tuple[np.ndarray, np.ndarray]:
  """(frames (length, size, size) uint8, frame labels (length,) int64) of one clip of `kind`: two
  digits drawn from `normal_digits` (n, s, s); for new_digit the changed one is swapped for one of
  `other_digits` from t0 on."""
  frames, labels, _ = plan_clip(rng, normal_digits, other_digits, length, kind, size)
  return frames, labels


def plan_clip(rng: np.random.Generator, normal_digits: np.ndarray, other_digits: np.ndarray, length: int,
              kind: str = NORMAL, size: int = SIZE):
  """make_clip's (frames, labels) and how it drew them: {"t0", "changed" (0 or 1), "paths" (2, length, 2)}."""
  side = normal_digits.shape[-1]
  room = float(size - side)
  if room <= 0:
    raise AnoganError(f"digits of {side} pixels do not fit in frames of {size}; use larger frames")
  t0 = int(rng.integers(length // 4, max(length // 4 + 1, (3 * length) // 4)))
  changed = int(rng.integers(2))
  digits, paths = [], []
  for k in range(2):
    own = kind if (k == changed and kind in ("stop", "jump", "fast")) else NORMAL
    paths.append(trajectory(rng, length, room, own, t0))
    digit = normal_digits[rng.integers(len(normal_digits))]
    sequence = np.repeat(digit[None], length, axis=0)
    if kind == "new_digit" and k == changed:
      sequence[t0:] = other_digits[rng.integers(len(other_digits))]
    digits.append(sequence)
  labels = np.zeros(length, np.int64)
  if kind == "jump":
    labels[t0] = 1
  elif kind != NORMAL:
    labels[t0:] = 1
  return render(np.stack(digits), np.stack(paths), size), labels, {"t0": t0, "changed": changed,
                                                                     "paths": np.stack(paths)}


def make_clips(seed, n_normal: int, n_per_kind: int, normal_digits: np.ndarray, other_digits: np.ndarray,
               length: int, size: int = SIZE) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(clips (n, length, size, size) uint8, frame labels (n, length), kind of each (n,) object):
  n_normal normal clips, then n_per_kind of each of KINDS, from the seeded stream `seed`."""
  kinds = [NORMAL] * n_normal + [kind for kind in KINDS for _ in range(n_per_kind)]
  rng = np.random.default_rng(seed)
  clips = np.zeros((len(kinds), length, size, size), np.uint8)
  labels = np.zeros((len(kinds), length), np.int64)
  for i, kind in enumerate(kinds):
    clips[i], labels[i] = make_clip(rng, normal_digits, other_digits, length, kind, size)
  return clips, labels, np.array(kinds, object)


def _as_frames(clips: np.ndarray, side: int, source: str) -> np.ndarray:
  """uint8 clips (n, T, 64, 64) -> float32 (n, T, side, side, 1) in [-1, 1]."""
  n, length = clips.shape[:2]
  frames = to_float_images(clips.reshape((n * length,) + clips.shape[2:]), (SIZE, SIZE, 1), source)
  resized = resize_images(frames, side)  # rounding may overshoot [-1, 1] by a few ulps
  return np.clip(resized, -1.0, 1.0, out=resized).reshape((n, length, side, side, 1))


def load_moving_mnist(config, read_test: bool = True) -> OneClassData:
  """The one-class Moving MNIST data of `config` (see the module's docstring); frame labels in
  `frame_labels`, the kind of each test clip in `classes_test`. `read_test=False` (training)
  generates no evaluation clips."""
  (x_train, y_train), (x_test, y_test) = load_arrays("mnist", config.data_dir)
  source = f"Moving MNIST from {source_name('mnist', config.data_dir)}"
  normal = np.asarray(config.normal_classes)
  if x_train.shape[1:3] != (28, 28):
    raise AnoganError(f"{source}: MNIST digits have shape {x_train.shape[1:]}, expected (28, 28); use MNIST's file")
  missing = [c for c in normal if c not in np.unique(y_train)]
  if missing:
    raise AnoganError(f"{source} has no digit of class {missing[0]}; choose --normal_classes among 0..9")
  others = ~np.isin(y_train, normal)
  if not others.any():
    raise AnoganError("--normal_classes holds every digit class, so no digit can be new in a test clip; "
                      "leave some classes out (e.g. --normal_classes=0,1,2,3,4,5,6,7)")
  length, side = config.clip_length, config.image_side
  n_train = config.train_examples or TRAIN_CLIPS
  total = int(round(n_train / (1 - config.val_fraction)))  # so that n_train remain after the held-out share
  train_digits, other_train = x_train[~others], x_train[others]
  clips, _, _ = make_clips([config.seed, 0], total, 0, train_digits, other_train, length)
  kept, held, _ = validation_split(np.zeros(len(clips), np.int64), np.array([0]), config.val_fraction, config.seed)
  kept = kept[:n_train]
  x_val = _as_frames(clips[held], side, source) if len(held) else None
  x_train_clips = _as_frames(clips[kept], side, source)
  if not read_test:
    empty = np.zeros(0, np.int64)
    return OneClassData(x_train=x_train_clips, x_test=np.zeros((0, length, side, side, 1), np.float32), y_test=empty,
                        classes_test=np.zeros(0, object), test_indices=empty, x_val=x_val,
                        frame_labels=np.zeros((0, length), np.int64))
  if config.eval_split == "val":
    per_kind = max(1, len(held) // len(KINDS))
    anomalous, labels, kinds = make_clips([config.seed, VAL_STREAM], 0, per_kind, train_digits, other_train, length)
    x = np.concatenate([clips[held], anomalous])
    frame_labels = np.concatenate([np.zeros((len(held), length), np.int64), labels])
    kinds = np.concatenate([np.array([NORMAL] * len(held), object), kinds])
    split = "val"
  else:
    test_others = ~np.isin(y_test, normal)
    per_kind = TEST_CLIPS // 2 // len(KINDS)
    x, frame_labels, kinds = make_clips([TEST_STREAM], TEST_CLIPS // 2, per_kind, x_test[~test_others],
                                        x_test[test_others], length)
    split = "test"
  y = frame_labels.max(axis=1)
  idx = test_subset(y, config.test_examples, config.seed)
  return OneClassData(x_train=x_train_clips, x_test=_as_frames(x[idx], side, source), y_test=y[idx],
                      classes_test=kinds[idx], test_indices=idx, split=split, x_val=x_val,
                      frame_labels=frame_labels[idx])
