"""What a model family provides. The training driver (train_lib), evaluate, score and export use
only this interface, so a family is one module under anogan_tf/models/ and a registry line in
anogan_tf/models/__init__.py.

A family module defines:

  NAME: str                                   # the --model value
  NETWORKS: tuple of str                      # saved as <workdir>/<name>.keras, in this order
  def build_networks(config) -> dict          # name -> registered, serialisable keras.Model
  def make_trainer(config, networks) -> Trainer
  def make_scorer(config, networks, **overrides) -> Scorer
  def sample(networks, noise) -> images       # (n, h, w, c) in [-1, 1] for the sample grids; or None
  def noise(rng, n, config) -> np.ndarray     # (n, ...) float32: the per-example noise of train_step

and optionally

  GAN_DISCRIMINATOR = True                    # trains a GAN's D, which --diffaugment and
                                              # --d_spectral_norm apply to (refused for the others)

and, for a scorer that needs networks trained after the family's own (anogan's
warm-start encoder):

  OPTIONAL_NETWORKS: tuple of str                   # such networks, <name>.keras when trained
  STAGES: tuple of Stage                            # the training stages that train them
  def check_config(config) -> None                  # the family's own settings, in any Config
  def scoring_networks(config) -> tuple of str      # what make_scorer needs; default NETWORKS
  def untrained_network_hint(name, workdir) -> str  # how to train such a network when it is missing

The driver owns epochs, shuffling, tf.data, checkpoints and resume, history.csv, TensorBoard,
sample grids, NaN and collapse checks, dropout reseeding and locks; a family supplies only its
step(s), its optimizers and what else to checkpoint. The driver draws an epoch's noise as
`noise(rng, n_images, config)` from the epoch's seeded generator and hands `train_step` the rows
of the batch, so any shape (n, ...) works: (n, 0) for a family that needs none. Each network's
weights are checkpointed as `<name>` and `<name>_weights` (an explicit list: the networks keep
their layers in Python lists, which tf.train.Checkpoint does not follow), beside
`Trainer.checkpoint_items()` and the epoch counter.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from anogan_tf.errors import AnoganError
from anogan_tf.nn import memory
from anogan_tf.nn.optimizers import FusedAdam


def checked_ink_power(power) -> float:
  """--ink_power as a scorer takes it (losses.ink_normalised): 0 or a positive finite number."""
  value = float(power)
  if not (np.isfinite(value) and value >= 0):
    raise AnoganError(f"ink_power={power}; use 0 (the raw score) or a positive power, e.g. 0.5")
  return value


OUTPUT_FIELDS = ("score", "reconstruction", "residual_map")  # a ScoreResult's arrays beside parts and extras


@dataclasses.dataclass
class ScoreResult:
  """Per-image results of a scorer; every array has N rows, one per image."""

  score: np.ndarray  # (N,) anomaly score: higher = more anomalous
  reconstruction: np.ndarray  # (N,) + example shape in [-1, 1]: G(z*), G(E(x)) or the decoder's output
  residual_map: np.ndarray  # (N,) + example shape: |x - reconstruction|, where the anomaly is
  parts: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> (N,) parts of the score
  extras: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> (N, ...) e.g. z, trajectory

  def __len__(self):
    return len(self.score)

  def as_dict(self) -> Dict[str, np.ndarray]:
    """The fields flat, as a compiled function and an export's signature return them: score,
    reconstruction, residual_map, parts as part_<name>, extras by their names (which must not be
    another output's); `from_dict` inverts it."""
    out = {name: getattr(self, name) for name in OUTPUT_FIELDS}
    out.update({f"part_{name}": value for name, value in self.parts.items()})
    for name, value in self.extras.items():
      if name in out or name.startswith("part_"):
        raise AnoganError(f"the scorer's extra '{name}' has the name of another output; rename it in the family")
      out[name] = value
    return out

  @staticmethod
  def from_dict(flat) -> "ScoreResult":
    return ScoreResult(**{name: flat[name] for name in OUTPUT_FIELDS},
                       parts={k[len("part_"):]: v for k, v in flat.items() if k.startswith("part_")},
                       extras={k: v for k, v in flat.items() if k not in OUTPUT_FIELDS and not k.startswith("part_")})

  @staticmethod
  def concatenate(results: Sequence["ScoreResult"]) -> "ScoreResult":
    first = results[0]
    cat = lambda key, attr: np.concatenate([getattr(r, attr)[key] for r in results])  # noqa: E731
    return ScoreResult(score=np.concatenate([r.score for r in results]),
                       reconstruction=np.concatenate([r.reconstruction for r in results]),
                       residual_map=np.concatenate([r.residual_map for r in results]),
                       parts={k: cat(k, "parts") for k in first.parts},
                       extras={k: cat(k, "extras") for k in first.extras})


class Scorer:
  """Scores examples (N,) + `example_shape` floats in [-1, 1]: images (h, w, c), series (T,
  features) or clips (T, h, w, c). `score_chunks` yields one
  ScoreResult per fixed-size chunk (`batch_size` examples, the last one padded) so memory stays
  flat; `score` concatenates them. `settings()` names what changes the scores, as evaluate's
  metrics.json records it. A ScoreResult's `parts` become columns of scores.csv; an extra named
  `trajectory` (N, iterations), a per-image loss per search iteration, is plotted by evaluate."""

  batch_size: int
  example_shape: Tuple[int, ...]
  # residual_map is |x - reconstruction| (True), or (False) the family's own per-pixel anomaly map
  # in [0, 1] (e.g. a predicted segmentation)
  residual_is_error: bool = True

  @property
  def image_shape(self) -> Tuple[int, ...]:
    """The example shape, by its name from when every example was an image."""
    return self.example_shape

  def score_chunks(self, images) -> Iterator[ScoreResult]:
    raise NotImplementedError

  def score(self, images) -> ScoreResult:
    return ScoreResult.concatenate(list(self.score_chunks(images)))

  def score_tensors(self, x) -> ScoreResult:
    """The scoring as one traceable graph: x a float32 tensor (batch, h, w, c) in [-1, 1], any
    batch size, unchecked -> a ScoreResult whose fields are tensors with the numbers
    `score_chunks` yields for x. No variables are created or changed, so a SavedModel of it
    (anogan_tf.export_lib) serves concurrent calls. Traced as written, as Trainer.train_step is
    (not rewritten by autograph)."""
    raise NotImplementedError(f"{type(self).__name__} has no traceable score")

  def settings(self) -> dict:
    """{name: value} of the settings this scorer applies, JSON-serialisable (lists for tuples)."""
    return {}

  # --- what an export (anogan_tf.export_lib) needs to know beyond score_tensors

  takes_initial_z: bool = False  # score_tensors(x, initial_z) takes a start (N, latent_dim) per image

  def initial_z(self, n: int) -> np.ndarray:
    """With takes_initial_z: the starts (n, latent_dim) of the next n images, drawn from the
    scorer's seeded stream as `score` draws them (so scoring split across devices starts where one
    device does)."""
    raise NotImplementedError(f"{type(self).__name__} takes no initial z")

  def keyed_initial_z(self, x):
    """With takes_initial_z: the start drawn from the scorer's seed and each image's bytes, so an
    image's start does not depend on the other images of a call."""
    raise NotImplementedError(f"{type(self).__name__} takes no initial z")

  def export_metadata(self) -> dict:
    """What an exported SavedModel's metadata says of this scorer beyond its settings (e.g. a
    search's latent size, seed and where it starts); JSON-serialisable."""
    return {}


class OnePassScorer(Scorer):
  """A Scorer whose scoring is one pass of its networks: `score_tensors(x)` (traceable, see
  Scorer) run compiled once per chunk size over chunks of `batch_size` examples, the last one
  padded (rows are independent in inference mode, so padding changes no score); `trace_count`
  counts the traces. A subclass sets `example_shape` and its networks, then calls
  `init_chunks(batch_size)`, and defines `score_tensors` and `activation_floats_per_image` (what
  the automatic chunk size, batch_size 0, budgets for)."""

  def init_chunks(self, batch_size: int) -> None:
    if int(batch_size) < 0:
      raise AnoganError(f"batch_size={batch_size}; use a positive number of examples at a time, or 0 to choose it "
                        "from the available memory")
    self.batch_size = int(batch_size) or memory.fit_batch_size(self.activation_floats_per_image())
    self.trace_count = 0
    self._functions = {}

  def activation_floats_per_image(self) -> int:
    raise NotImplementedError

  def _function(self, size: int):
    if size not in self._functions:
      def traced(x):
        self.trace_count += 1  # Python side effect: once per trace, never per call
        return self.score_tensors(x).as_dict()
      spec = tf.TensorSpec((size,) + tuple(self.example_shape), tf.float32)
      self._functions[size] = tf.function(traced, input_signature=[spec], autograph=False)  # as score_tensors says
    return self._functions[size]

  def score_chunks(self, images) -> Iterator[ScoreResult]:
    x = check_images(images, self.example_shape)
    size = min(self.batch_size, len(x))
    run = self._function(size)
    for chunk, real in padded_chunks(x, size):
      yield ScoreResult.from_dict({k: v.numpy()[:real] for k, v in run(tf.constant(chunk)).items()})


def score_batch_size(config, batch_size: Optional[int]) -> int:
  """A scorer's chunk size: `batch_size` if given, else --map_batch_size (0: chosen from the
  available memory)."""
  return int(config.map_batch_size if batch_size is None else batch_size)


@dataclasses.dataclass(frozen=True)
class Stage:
  """A training stage that a family runs after its own epochs, on its trained networks, left
  unchanged (AnoGAN's warm-start encoder): one more network and its Trainer (no noise, one
  learning-rate phase). The driver runs it like the family's epochs, resumable and kill-safe,
  writing apart: checkpoints/<name>/, <name>_history.csv, <name>_loss.png, tensorboard/<name>/,
  samples/<name>_epoch_*.png, and the network as <network>.keras."""

  name: str
  network: str  # what it trains and exports (<network>.keras); one of the family's OPTIONAL_NETWORKS
  epochs_field: str  # the Config field holding its epochs; 0: the stage does not run
  fields: Tuple[str, ...]  # settings only this stage reads: free to change until it has begun
  seed: int  # its random streams: initial weights from (seed, this), epoch e's order from (seed, this, e)
  build: Callable  # (config, networks) -> (network, trainer)
  samples: Callable  # (network, trainer, x) -> images (2n, h, w, c): what the sample grids show
  what: str  # how messages name it, e.g. "the warm-start encoder"
  retry: str  # how to retry when it diverges, appended to the message, e.g. "with a lower --kappa"
  shown: int = 32  # training images in its sample grids

  @property
  def checkpoints(self) -> str:
    return os.path.join("checkpoints", self.name)

  @property
  def history(self) -> str:
    return f"{self.name}_history.csv"

  @property
  def loss_plot(self) -> str:
    return f"{self.name}_loss.png"


def example_shape(family, config) -> Tuple[int, ...]:
  """The shape of one example of the family under `config` (its `example_shape(config)`): the
  images' (h, w, c) unless the family says otherwise, e.g. (T, features) for series."""
  if hasattr(family, "example_shape"):
    return tuple(family.example_shape(config))
  return tuple(config.image_shape)


def stages(family) -> Tuple[Stage, ...]:
  """The family's stages after its own epochs (its STAGES), in order."""
  return tuple(getattr(family, "STAGES", ()))


class Trainer(tf.Module):
  """A family's optimisation: `train_step(x, noise, phase)` updates the networks on one batch
  and returns {loss name: scalar tensor} with keys `loss_names` (history.csv's columns, in this
  order); the driver compiles it inside its epoch function (so it must be traceable: no Python
  side effects per call, variables built in __init__) as written, not rewritten by autograph, as
  Keras traces a Model's train_step: a branch or loop on a tensor is tf.cond / tf.while_loop;
  Python control flow over Python values unrolls at trace time. `phase(epoch)` selects a learning-rate
  phase, one of `n_phases` (one trace each). `collapse_loss` names a discriminator's loss the
  driver watches for a collapse (GAN families: "d_loss"; None: no check). Losses whose names end
  in "_acc" are accuracies: logged, not drawn in loss.png."""

  loss_names: Tuple[str, ...] = ()
  n_phases: int = 1
  collapse_loss: Optional[str] = None
  averages_weights: bool = False  # can end training on an average of its weights (--ema_momentum, `finalize`)

  def phase(self, epoch: int) -> int:
    return 0

  def train_step(self, x, noise, phase: int) -> Dict[str, tf.Tensor]:
    raise NotImplementedError

  def checkpoint_items(self) -> dict:
    """{name: trackable} beyond the networks' weights: optimizers, counters."""
    return {}

  def finalize(self) -> None:
    """Sets the networks to the weights the run exports, once its last epoch is done (after its
    checkpoint: a resumed run goes on from the weights it trained)."""


def padded_chunks(x: np.ndarray, size: int) -> Iterator[Tuple[np.ndarray, int]]:
  """(chunk, real) over x in chunks of `size` rows, the last one padded with zeros to `size` (so a
  scorer's compiled function sees one shape): `real` rows of each chunk are x's. Rows are
  independent in inference mode, so padding changes no score."""
  for start in range(0, len(x), size):
    chunk = x[start:start + size]
    real = len(chunk)
    if real < size:
      chunk = np.concatenate([chunk, np.zeros((size - real,) + chunk.shape[1:], np.float32)])
    yield chunk, real


def adam(config, lr, average: bool = False):
  """A Keras Adam at `lr` with the run's betas and epsilon (nn.optimizers.FusedAdam: each
  variable's step one kernel). `average`: it also keeps the moving average of the weights it
  trains, with momentum --ema_momentum per step (Keras' use_ema: an optimizer variable, so
  checkpointed with it); `finalize_averages` sets the weights to it."""
  return FusedAdam(learning_rate=lr, beta_1=config.adam_beta_1, beta_2=config.adam_beta_2,
                   epsilon=config.adam_epsilon, use_ema=average,
                   ema_momentum=config.ema_momentum if average else 0.99)


def averaged_phase(config) -> Optional[int]:
  """The learning-rate phase whose Adam keeps the average of the weights: the last one trained
  (1 from lr_decay_epoch on, else 0); None without --ema_momentum."""
  if config.ema_momentum <= 0:
    return None
  return int(config.lr_decay_epoch > 0)


def adam_optimizers(config) -> list:
  """Adam at `lr`, and a fresh Adam at `lr_after_decay` from `lr_decay_epoch` on (seed 000's
  schedule; none when lr_decay_epoch is 0). Built by the caller. With --ema_momentum the last
  one also keeps the moving average of the weights it trains."""
  lrs = [config.lr] + ([config.lr_after_decay] if config.lr_decay_epoch > 0 else [])
  return [adam(config, lr, average=i == averaged_phase(config)) for i, lr in enumerate(lrs)]


def finalize_averages(optimizers_and_variables) -> None:
  """For each (optimizers, variables): the variables set to the average their optimizer keeps, if
  one does (Keras' finalize_variable_values; a no-op for the others). BatchNorm's moving
  statistics are not averaged: they already are, with their own momentum."""
  for optimizers, variables in optimizers_and_variables:
    for optimizer in optimizers:
      optimizer.finalize_variable_values(variables)


class PhasedAdamTrainer(Trainer):
  """A Trainer of one optimisation problem (`variables_to_train`) with one Adam per learning-rate
  phase (`adam_optimizers`), checkpointed as `optimizer` and `optimizer_after_decay`. A subclass
  sets `config` and its networks, calls `build_optimizers()` in __init__ (a tf.function may not
  create variables later) and `apply(tape, loss, phase)` in its train_step."""

  config = None
  averages_weights = True

  @property
  def variables_to_train(self) -> list:
    raise NotImplementedError

  def build_optimizers(self) -> None:
    self.optimizers = adam_optimizers(self.config)
    self.n_phases = len(self.optimizers)
    for opt in self.optimizers:
      opt.build(self.variables_to_train)

  def phase(self, epoch: int) -> int:
    decay = self.config.lr_decay_epoch
    return int(decay > 0 and epoch >= decay)

  def checkpoint_items(self) -> dict:
    items = {"optimizer": self.optimizers[0]}
    if self.n_phases > 1:
      items["optimizer_after_decay"] = self.optimizers[1]
    return items

  def finalize(self) -> None:
    finalize_averages([(self.optimizers, self.variables_to_train)])

  def apply(self, tape, loss, phase: int) -> None:
    variables = self.variables_to_train
    self.optimizers[phase].apply_gradients(zip(tape.gradient(loss, variables), variables))


def check_images(images, example_shape) -> np.ndarray:
  """Examples as float32 (N,) + example_shape in [-1, 1]: images (N, h, w, c), series (N, T,
  features), clips (N, T, h, w, c); without the last axis when it is 1 (N, h, w for one channel).
  Else a one-line AnoganError naming the problem and the fix. Every scorer checks its input with it."""
  shape = tuple(example_shape)
  what = "images" if len(shape) == 3 else "examples"
  x = np.asarray(images)
  if x.ndim == len(shape) and shape[-1] == 1:
    x = x[..., None]
  if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
    fix = "resize them" if len(shape) == 3 else "reshape them"
    raise AnoganError(f"{what} have shape {tuple(x.shape)} but the model expects (N,) + {shape}; "
                      f"{fix} or train a model for this shape")
  if not np.issubdtype(x.dtype, np.floating):
    raise AnoganError(f"{what} have dtype {x.dtype}; pass floats scaled to [-1, 1] (e.g. x / 127.5 - 1)")
  x = x.astype(np.float32, copy=False)
  if len(x) == 0:
    raise AnoganError(f"no {what} to score; pass at least one {what[:-1]}")
  if not np.isfinite(x).all():
    raise AnoganError(f"{what} contain NaN or inf; remove or repair those {what}")
  if x.min() < -1.001 or x.max() > 1.001:
    raise AnoganError(f"{what[:-1]} values span [{x.min():.3g}, {x.max():.3g}], outside [-1, 1]; "
                      "scale them as x / 127.5 - 1")
  return x
