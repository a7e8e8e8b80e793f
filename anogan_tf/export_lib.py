"""Export: a trained workdir of any model family as a TensorFlow SavedModel that scores images on
its own, with no anogan_tf (TF Serving, `tf.saved_model.load`).

The SavedModel holds the family's scorer as one graph (`Scorer.score_tensors`): for AnoGAN the
whole latent search, both Adam stages of `Config.map_stages()` with the mapping settings of the
workdir's flags.txt and the evaluation overrides given, and for the one-pass families (egbad, ae,
vae, and anogan with --initial_z=encoder --map_steps=0) their forward pass. It has no state that
calls share: z and the Adam moments are loop values of each call (mapper.py), so every call starts
afresh and concurrent calls do not meet. It scores chunks of one static size (--map_batch_size,
DEFAULT_CHUNK when 0), the last one padded, as evaluate does: see ScoringModule for why.

Signatures, all with a free batch size N:

  serving_default  images float32 (N, h, w, c) in [-1, 1]
  serving_uint8    images uint8 (N, h, w, c), pixels 0..255, scaled to the float32 values of
                   x / 127.5 - 1 that anogan_tf reads pixels as (looked up, see PIXEL_VALUES), so
                   both signatures give the same outputs to the bit
  serving_from_z   (a search from a random start) images float32 in [-1, 1] and initial_z float32
                   (N, latent_dim): the search starts there. Evaluate's start for the i-th of N
                   images is row i of NumPy's `default_rng(seed)` draw of (N, latent_dim) from
                   --z_init (README, "Export"), so evaluate's scores are reproducible.

Two signatures for images, not one that converts by dtype: a SavedModel signature has one dtype
per input. A search starts at E(x) with --initial_z=encoder; otherwise, without serving_from_z,
at z drawn per image from a stateless generator keyed by the search's seed (--map_seed, else
--seed) and the image's bytes (`LatentMapper.keyed_initial_z`). Either way an image's outputs do
not depend on the other images of the call. With --map_restarts=R, R searches run per image,
restart k from the keyed start of
seed + k * RESTART_SEED_STRIDE, and each image's outputs are those of its lowest final loss (no
serving_from_z: there are R starts).

Outputs: score (N,), is_anomaly (N,) bool = score > threshold, reconstruction and residual_map
(N, h, w, c), the score's parts as part_<name> (N,) (anogan, egbad: part_residual,
part_discrimination; ae: part_reconstruction; vae: part_reconstruction, part_kl), and the family's
extras: z (N, latent_dim), and for a search initial_z (N, latent_dim) and trajectory
(N, iterations). Images of another shape or rank, an empty batch, NaN or inf, float images
outside [-1, 1] or a wrong initial_z fail the call with InvalidArgumentError naming the problem,
before any network runs. The SavedModel's `threshold` (a float32 variable) and `metadata` (a JSON
string variable: family, image shape, scorer settings, chunk size, threshold and its source,
signatures) can be read after loading.

Threshold: `--threshold=T`, else the threshold score and evaluate decide with (threshold.decide:
`<workdir>/threshold.json`, written by training with --val_fraction, at --threshold_percentile of
its held-out scores); when that decides nothing (no threshold.json, or one computed with other
scoring settings or on other weights), the export fails, saying why. The SavedModel is written to a temporary
folder beside --output and renamed into place: a failed or killed export leaves no half-written
SavedModel, and an existing one is replaced only with --overwrite.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from anogan_tf import models
from anogan_tf.errors import AnoganError
from anogan_tf.evaluation import threshold as threshold_lib
from anogan_tf.utils.files import check_folder_can_be_made

SERVING_FLOAT = "serving_default"
SERVING_UINT8 = "serving_uint8"
SERVING_FROM_Z = "serving_from_z"
THRESHOLD_FILE = threshold_lib.THRESHOLD_FILE
RANGE_SLACK = 1.001  # float images may stray this far past [-1, 1] (rounding), as base.check_images allows
SAVED_MODEL_FILE = "saved_model.pb"
# Images per chunk when --map_batch_size is 0 (evaluate's automatic size follows the memory of the
# machine that evaluates, so it cannot fix an export's). 64: small enough that a call of one image
# stays cheap, large enough that the kernels sum as evaluate's large chunks do (smaller chunks run
# other kernels, whose rounding a search carries into the scores; docs/export.md has the numbers).
DEFAULT_CHUNK = 64
# Pixel p in 0..255 as anogan_tf reads it (data.py, score_lib: p / 127.5 - 1 in float32), looked up:
# in a graph, TensorFlow's optimiser turns the division into a multiplication by 1 / 127.5, which
# rounds 111 of the 256 values differently.
PIXEL_VALUES = np.arange(256, dtype=np.float32) / 127.5 - 1.0


class ScoringModule(tf.Module):
  """The exported object: the networks' weights, `threshold`, `metadata` and the signature
  functions (module docstring). `scorer` is a family's Scorer (its `score_tensors` is traced);
  `weights` every variable its graph reads, tracked so that they are saved.

  The scorer runs on chunks of one static size, `chunk` images, the last one padded, as evaluate
  maps fixed-size chunks. Static, because with an unknown batch size TensorFlow's graph optimiser
  leaves out rewrites it applies to the library's fixed-size graphs (it sums the search's
  gradient in another order), and on a trained GAN the search turns such last-bit differences
  into different scores (docs/export.md). One size, because other sizes run other kernels, with
  the same effect. So an image's outputs do not depend on the other images of a call, to the bit,
  and they are the library's at that chunk size.
  """

  def __init__(self, scorer, weights, threshold: float, metadata: dict, chunk: int):
    super().__init__(name="anogan_tf_export")
    self._scorer = scorer
    self.network_weights = list(weights)
    self.threshold = tf.Variable(float(threshold), dtype=tf.float32, trainable=False, name="threshold")
    self.metadata = tf.Variable(json.dumps(metadata, sort_keys=True), trainable=False, name="metadata")
    self._size = int(chunk)
    image_shape = tuple(scorer.example_shape)  # an image's (h, w, c), or any example's shape
    z_shape = (scorer.latent_dim,) if scorer.takes_initial_z else None
    spec = [tf.TensorSpec((self._size,) + image_shape, tf.float32)]
    if z_shape:
      spec.append(tf.TensorSpec((self._size,) + z_shape, tf.float32))
    # Every function traced as written, as score_tensors is (models.base): no autograph rewriting.
    function = functools.partial(tf.function, autograph=False)
    self._chunk_fn = function(self._chunk, input_signature=spec)  # traced once; every signature calls it
    images = tf.TensorSpec((None,) + image_shape, tf.float32, name="images")
    self.serving_default = function(self._from_float, input_signature=[images])
    self.serving_uint8 = function(self._from_uint8,
                                  input_signature=[tf.TensorSpec((None,) + image_shape, tf.uint8, name="images")])
    if z_shape:
      self.serving_from_z = function(
          self._from_z, input_signature=[images, tf.TensorSpec((None,) + z_shape, tf.float32, name="initial_z")])

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    out = {SERVING_FLOAT: self.serving_default.get_concrete_function(),
           SERVING_UINT8: self.serving_uint8.get_concrete_function()}
    if self._scorer.takes_initial_z:
      out[SERVING_FROM_Z] = self.serving_from_z.get_concrete_function()
    return out

  # --- the signatures

  def _from_float(self, images):
    return self._score(self._checked_floats(images))

  def _from_uint8(self, images):
    x = self._checked_shape(images)
    return self._score(tf.gather(tf.constant(PIXEL_VALUES), tf.cast(x, tf.int32)))

  def _from_z(self, images, initial_z):
    x = self._checked_floats(images)
    latent_dim = self._scorer.latent_dim
    z = _after(initial_z, tf.equal(_shape_text(initial_z), tf.strings.format("{},{}", (tf.shape(x)[0], latent_dim))),
               f"initial_z needs the shape (N, {latent_dim}) for N images; pass one starting z per image")
    z = _after(z, tf.reduce_all(tf.math.is_finite(z)), "initial_z contains NaN or inf; pass finite starting points")
    return self._score(x, z)

  def _checked_floats(self, images):
    x = self._checked_shape(images)
    x = _after(x, tf.reduce_all(tf.math.is_finite(x)), "images contain NaN or inf; remove or repair those images")
    return _after(x, tf.reduce_all((x >= -RANGE_SLACK) & (x <= RANGE_SLACK)),
                  "image values are outside [-1, 1]; scale 0..255 pixels as x / 127.5 - 1, or pass the pixels as "
                  "uint8 to the serving_uint8 signature")

  def _checked_shape(self, images):
    """images, once their shape is (N,) + the example shape with N > 0: a loaded signature does
    not check the shape of its inputs, and oneDNN's convolution aborts the process on a wrong rank."""
    shape = tuple(self._scorer.example_shape)
    sizes = ", ".join(map(str, shape))
    fix = "resize them, add the channel axis" if len(shape) == 3 else "reshape them"
    x = _after(images, tf.strings.regex_full_match(_shape_text(images), "[0-9]+," + ",".join(map(str, shape))),
               f"images need the shape (N, {sizes}); {fix}, or export a model trained on that shape")
    return _after(x, tf.shape(x)[0] > 0, "no images to score; pass at least one image")

  # --- scoring in chunks of one static size

  def _score(self, x, initial_z=None):
    """Outputs for x (N, h, w, c), N >= 1; `initial_z` (N, latent_dim) for a search from a given
    start, else the keyed start when the search takes one."""
    if initial_z is None and self._scorer.takes_initial_z:
      initial_z = self._scorer.keyed_initial_z(x)
    inputs = (x,) if initial_z is None else (x, initial_z)
    n = tf.shape(x)[0]
    pad = (self._size - n % self._size) % self._size
    chunks = tuple(tf.reshape(tf.pad(t, [[0, pad]] + [[0, 0]] * (t.shape.rank - 1)),
                              (-1, self._size) + tuple(t.shape[1:]))
                   for t in inputs)  # (chunks, size, ...)
    specs = {k: tf.TensorSpec(v.shape, v.dtype)
             for k, v in self._chunk_fn.get_concrete_function().structured_outputs.items()}
    out = tf.map_fn(lambda chunk: self._chunk_fn(*chunk), chunks, fn_output_signature=specs,
                    parallel_iterations=1)  # one chunk at a time: memory as evaluate's
    result = {k: tf.reshape(v, (-1,) + tuple(v.shape[2:]))[:n] for k, v in out.items()}
    return {"is_anomaly": result["score"] > self.threshold, **result}

  def _chunk(self, x, initial_z=None):
    scorer = self._scorer
    return _as_dict(scorer.score_tensors(x) if initial_z is None else scorer.score_tensors(x, initial_z))


def _after(x, condition, message: str):
  """x, computed only once `condition` holds; else the call fails with InvalidArgumentError
  ("assertion failed: [message]")."""
  with tf.control_dependencies([tf.debugging.Assert(condition, [message])]):
    return tf.identity(x)


def _shape_text(x):
  """x's shape at run time as text, "2,28,28,1". Compared as text, not as a vector: the graph
  is optimised for the signature's rank, so a vector of another rank fails the comparison itself."""
  return tf.strings.reduce_join(tf.strings.as_string(tf.shape(x)), separator=",")


def _as_dict(result) -> Dict[str, tf.Tensor]:
  """A ScoreResult of tensors as the signature's flat outputs (ScoreResult.as_dict: parts as
  part_<name>, extras by name), beside which the signature adds is_anomaly."""
  out = result.as_dict()
  if "is_anomaly" in out:
    raise AnoganError("the scorer's extra 'is_anomaly' has the name of another output; rename it in the family")
  return out


# --- the threshold

def resolve_threshold(config, workdir: str, settings: dict, networks: dict,
                      threshold: Optional[float]) -> Tuple[float, str, Optional[float]]:
  """(threshold, where it came from, the percentile of the held-out normal scores it is, None
  for --threshold): `threshold` when given, else the workdir's threshold for scores of a scorer
  with `settings` on `networks` at --threshold_percentile, decided by threshold.decide as score
  and evaluate decide; AnoganError with its reason when it decides nothing (an export needs a
  threshold for is_anomaly)."""
  if threshold is not None:
    if not math.isfinite(threshold):
      raise AnoganError(f"--threshold={threshold} is not a finite number; pass a score such as 0.25")
    return float(threshold), "--threshold", None
  decision = threshold_lib.decide(config, workdir, settings, networks)
  if decision.threshold is None:
    raise AnoganError(f"{decision.note}; or pass --threshold=T to export with a threshold of your own")
  return decision.threshold, THRESHOLD_FILE, decision.percentile


# --- the output folder

def _is_saved_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def check_output(output: str, overwrite: bool) -> None:
  """Read-only: a SavedModel can be written at `output`. It must not exist (an empty folder is
  fine), or with `overwrite` hold a SavedModel; its folder must be creatable and writable."""
  if os.path.lexists(output):
    if os.path.isdir(output) and not os.path.islink(output) and not os.listdir(output):
      pass  # an empty folder: nothing to lose
    elif not (os.path.isdir(output) and not os.path.islink(output) and _is_saved_model(output)):
      raise AnoganError(f"--output {output} exists and is not a SavedModel; move it away or choose another --output")
    elif not overwrite:
      raise AnoganError(f"--output {output} holds a SavedModel already; pass --overwrite to replace it, or choose "
                        "another --output")
  parent = os.path.dirname(os.path.abspath(output))
  check_folder_can_be_made(parent, "the folder of --output", "--output")
  existing = parent
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    raise AnoganError(f"cannot write to {existing} ({e.strerror}); choose a writable --output") from None


def _write(module: ScoringModule, output: str) -> None:
  """Saves `module` to a temporary folder beside `output`, then renames it onto `output` (an
  existing SavedModel there is moved aside first and removed after)."""
  output = os.path.abspath(output)
  parent, name = os.path.split(output)
  made = []
  folder = parent
  while not os.path.exists(folder):
    made.append(folder)
    folder = os.path.dirname(folder)
  tmp = os.path.join(parent, f".{name}.tmp{os.getpid()}")
  old = os.path.join(parent, f".{name}.old{os.getpid()}")
  try:
    os.makedirs(parent, exist_ok=True)
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    if _is_saved_model(output):
      os.rename(output, old)
    elif os.path.isdir(output):
      os.rmdir(output)  # empty (check_output): rename() needs it gone or empty
    os.rename(tmp, output)
  except (OSError, tf.errors.OpError) as e:
    if os.path.exists(old) and not os.path.exists(output):
      os.rename(old, output)  # put the previous SavedModel back
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in made:  # the folders this export created, innermost first
      try:
        os.rmdir(folder)
      except OSError:
        break
    reason = getattr(e, "strerror", None) or getattr(e, "message", None) or type(e).__name__
    raise AnoganError(f"cannot write the SavedModel to {output} ({reason}); choose a writable --output with "
                      "free space") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  shutil.rmtree(old, ignore_errors=True)


# --- the export

def metadata(model: str, scorer, threshold: float, threshold_source: str, chunk: int,
             precision: str = "float32", threshold_percentile: Optional[float] = None) -> dict:
  """What the SavedModel's `metadata` says: the family, image shape, scorer settings, threshold,
  its source and the percentile of held-out normal scores it is (None: given), signatures, chunk
  size, the precision its graph computes in, and what the scorer adds (Scorer.export_metadata:
  for a search the latent size, seed and where it starts)."""
  out = {"model": model, "image_shape": list(scorer.example_shape), "example_shape": list(scorer.example_shape),
         "scorer": threshold_lib.compared_settings(scorer.settings()),
         "threshold": float(threshold), "threshold_source": threshold_source,
         "threshold_percentile": None if threshold_percentile is None else float(threshold_percentile),
         "signatures": [SERVING_FLOAT, SERVING_UINT8], "chunk": int(chunk), "precision": precision}
  out.update(scorer.export_metadata())
  if scorer.takes_initial_z:
    out["signatures"].append(SERVING_FROM_Z)
  return out


def build_module(config, networks: dict, threshold: float, threshold_source: str = "--threshold",
                 scorer=None, threshold_percentile: Optional[float] = None) -> ScoringModule:
  """The ScoringModule of `config.model`'s scorer (made from `config` and `networks`, name ->
  keras.Model, unless given) with `threshold`, scoring chunks of --map_batch_size images
  (DEFAULT_CHUNK when that is 0, automatic)."""
  scorer = scorer or models.family(config.model).make_scorer(config, networks)
  weights = [w for network in networks.values() for w in network.weights]
  chunk = config.map_batch_size or DEFAULT_CHUNK
  return ScoringModule(scorer, weights, threshold,
                       metadata(config.model, scorer, threshold, threshold_source, chunk, config.precision,
                                threshold_percentile), chunk)


def export(config, workdir: str, output: str, threshold: Optional[float] = None, overwrite: bool = False) -> dict:
  """Writes the SavedModel of the workdir's `config.model` family (its trained networks, scored
  with `config`'s scoring settings) to `output`; returns its metadata. The output, the networks
  and the threshold are checked before anything is written."""
  from anogan_tf.engine.workdir import load_networks
  check_output(output, overwrite)
  family = models.family(config.model)
  networks = load_networks(workdir, family, config)
  scorer = family.make_scorer(config, networks)
  value, source, percentile = resolve_threshold(config, workdir, scorer.settings(), networks, threshold)
  module = build_module(config, networks, value, source, scorer=scorer, threshold_percentile=percentile)
  _write(module, output)
  return json.loads(module.metadata.numpy().decode())
