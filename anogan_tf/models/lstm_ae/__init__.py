"""LSTM autoencoder for series (seed 004, section 1.4 "AE with LSTM"): score = reconstruction error
of the series, residual = the error per time step.

Examples are series (N, T, features) in [-1, 1] (EXAMPLES = "series"; --dataset=ucr scales them,
data/ucr.py). The networks are the sequence-to-sequence autoencoder of the Keras blog's "Building
Autoencoders in Keras" (LSTM encoder to a code, `RepeatVector(T)`, LSTM decoder) as used for
anomaly detection by Malhotra et al. 2016 ("LSTM-based Encoder-Decoder for Multi-sensor Anomaly
Detection"):

  encoder: LSTM(u1, return_sequences) ... LSTM(uk) -> Dense(latent_dim)    (--lstm_units=u1,...,uk)
  decoder: RepeatVector(T) -> LSTM(uk, return_sequences) ... LSTM(u1, return_sequences)
           -> Dense(features) per step -> tanh                              (output in [-1, 1])

With --lstm_max_steps=N and T > N the LSTMs run over patches: the series is cut into ceil(T / p)
patches of p = ceil(T / N) consecutive steps (the last one padded with the series' last value),
one patch an LSTM step with its p values as features (`Patches`); the decoder repeats the code for
every patch and its Dense gives each patch its p values back (`Unpatches`, cropped to T). The
network sees every value and reconstructs every step, but an LSTM's sequential steps, its cost on
a CPU, and the distance its code has to carry shrink p-fold.

Training and scoring are the autoencoder's (models/ae): one Adam on the per-series error summed
over steps and features (--recon_loss=l1: |x - x'|, l2: (x - x')^2); the score is that error in
inference mode, the residual map |x - x'| (N, T, features), so evaluate and score show where in
time a series is anomalous.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import keras

import anogan_tf.models.ae as ae
import anogan_tf.models.base as base
from anogan_tf.errors import AnoganError
from anogan_tf.nn import memory
from anogan_tf.nn.networks import build_chain, run_chain

NAME = "lstm_ae"
EXAMPLES = "series"
NETWORKS = ("encoder", "decoder")


def example_shape(config):
  """(T, features) of the series: --series_length and --series_features (training resolves 0s
  from the data and records them in flags.txt)."""
  if not (config.series_length and config.series_features):
    raise AnoganError(f"--model={NAME} has no series shape yet (--series_length={config.series_length}, "
                      f"--series_features={config.series_features}); train on --dataset=ucr, which reads it, or give "
                      "both")
  return (int(config.series_length), int(config.series_features))


def _shape(series_shape) -> tuple:
  shape = tuple(int(s) for s in series_shape)
  if len(shape) != 2 or min(shape) < 1:
    raise AnoganError(f"series shape {shape} is not (time steps, features) of at least 1 each")
  return shape


def patch_size(steps: int, max_steps: int) -> int:
  """Steps per LSTM step: 1 without a cap (max_steps 0) or when T fits, else ceil(T / max_steps)."""
  return 1 if not max_steps or steps <= max_steps else -(-int(steps) // int(max_steps))


@keras.saving.register_keras_serializable(package="anogan_tf")
class Patches(keras.layers.Layer):
  """(batch, T, f) -> (batch, ceil(T / size), size * f): consecutive steps in patches of `size`,
  the last one padded with the series' last value."""

  def __init__(self, size: int, steps: int, **kwargs):
    super().__init__(**kwargs)
    self.size, self.steps = int(size), int(steps)
    self.patches = -(-self.steps // self.size)

  def call(self, x):
    pad = self.patches * self.size - self.steps
    if pad:
      x = keras.ops.concatenate([x, keras.ops.repeat(x[:, -1:], pad, axis=1)], axis=1)
    return keras.ops.reshape(x, (-1, self.patches, self.size * x.shape[-1]))

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.patches, self.size * input_shape[-1])

  def get_config(self):
    return {**super().get_config(), "size": self.size, "steps": self.steps}


@keras.saving.register_keras_serializable(package="anogan_tf")
class Unpatches(keras.layers.Layer):
  """(batch, patches, size * f) -> (batch, steps, f): Patches' inverse, the padding cropped."""

  def __init__(self, size: int, steps: int, **kwargs):
    super().__init__(**kwargs)
    self.size, self.steps = int(size), int(steps)

  def call(self, x):
    features = x.shape[-1] // self.size
    return keras.ops.reshape(x, (-1, x.shape[1] * self.size, features))[:, :self.steps]

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.steps, input_shape[-1] // self.size)

  def get_config(self):
    return {**super().get_config(), "size": self.size, "steps": self.steps}


class _Chain(keras.Model):
  """A chain of layers built by shape, so a fresh instance has its weights at once."""

  def call(self, inputs, training=False):
    return run_chain(self.chain, inputs, training)


@keras.saving.register_keras_serializable(package="anogan_tf")
class SeriesEncoder(_Chain):
  """Series (batch, T, features) -> codes (batch, latent_dim): stacked LSTMs (every one but the
  last returning its sequence; over Patches when max_steps caps the steps), the last one's final
  output through Dense(latent_dim)."""

  def __init__(self, series_shape: Sequence[int] = (24, 1), units: Sequence[int] = (64,), latent_dim: int = 16,
               max_steps: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.example_shape = _shape(series_shape)
    self.units, self.latent_dim, self.max_steps = tuple(int(u) for u in units), int(latent_dim), int(max_steps)
    size = patch_size(self.example_shape[0], self.max_steps)
    self.chain = [Patches(size, self.example_shape[0], name="patches")] * (size > 1)
    self.chain += [keras.layers.LSTM(u, return_sequences=i < len(self.units) - 1, name=f"lstm{i + 1}")
                  for i, u in enumerate(self.units)] + [keras.layers.Dense(self.latent_dim, name="code")]
    build_chain(self.chain, (None,) + self.example_shape)
    self.built = True

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.latent_dim)

  def get_config(self):
    return {**super().get_config(), "series_shape": list(self.example_shape), "units": list(self.units),
            "latent_dim": self.latent_dim, "max_steps": self.max_steps}


@keras.saving.register_keras_serializable(package="anogan_tf")
class SeriesDecoder(_Chain):
  """Codes (batch, latent_dim) -> series (batch, T, features) in [-1, 1]: RepeatVector(T), the
  encoder's LSTMs in reverse order (each returning its sequence), Dense(features) on every step, tanh
  (with max_steps: one step a patch, Dense(patch * features) cut back into steps by Unpatches)."""

  def __init__(self, series_shape: Sequence[int] = (24, 1), units: Sequence[int] = (64,), latent_dim: int = 16,
               max_steps: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.example_shape = _shape(series_shape)
    self.units, self.latent_dim, self.max_steps = tuple(int(u) for u in units), int(latent_dim), int(max_steps)
    steps, features = self.example_shape
    size = patch_size(steps, self.max_steps)
    self.chain = ([keras.layers.RepeatVector(-(-steps // size), name="repeat")]
                  + [keras.layers.LSTM(u, return_sequences=True, name=f"lstm{i + 1}")
                     for i, u in enumerate(reversed(self.units))]
                  + [keras.layers.Dense(size * features, name="output")]
                  + [Unpatches(size, steps, name="unpatches")] * (size > 1)
                  + [keras.layers.Activation("tanh", name="tanh")])
    build_chain(self.chain, (None, self.latent_dim))
    self.built = True

  def compute_output_shape(self, input_shape):
    return (input_shape[0],) + self.example_shape

  def get_config(self):
    return {**super().get_config(), "series_shape": list(self.example_shape), "units": list(self.units),
            "latent_dim": self.latent_dim, "max_steps": self.max_steps}


def build_networks(config) -> Dict[str, keras.Model]:
  """{"encoder": x (N, T, f) -> z (N, latent_dim), "decoder": z -> x' (N, T, f) in [-1, 1]}."""
  kwargs = dict(series_shape=example_shape(config), units=config.lstm_units, latent_dim=config.latent_dim,
                max_steps=config.lstm_max_steps)
  return {"encoder": SeriesEncoder(name="encoder", **kwargs), "decoder": SeriesDecoder(name="decoder", **kwargs)}


noise = ae.noise  # deterministic: (n, 0)
sample = ae.sample  # no prior: no sample grids


def make_trainer(config, networks) -> ae.AutoencoderTrainer:
  return ae.AutoencoderTrainer(config, networks)


class SeriesScorer(ae.AutoencoderScorer):
  """The autoencoder's scorer on series: score = the error summed over steps and features,
  reconstruction D(E(x)) (N, T, f), residual_map |x - x'| (N, T, f), extras z (N, latent_dim)."""

  def activation_floats_per_image(self) -> int:
    """Per series: every layer output of E and D, and an LSTM's four gates and cell per step."""
    steps = -(-self.example_shape[0] // patch_size(self.example_shape[0], self.encoder.max_steps))
    gates = 5 * steps * sum(self.encoder.units)
    return (memory.chain_floats(self.encoder.chain, self.example_shape)
            + memory.chain_floats(self.decoder.chain, (self.decoder.latent_dim,)) + 2 * gates)


def make_scorer(config, networks, recon_loss: Optional[str] = None, batch_size: Optional[int] = None) -> SeriesScorer:
  """Overrides: recon_loss (default config.recon_loss), batch_size (default --map_batch_size; 0:
  chosen from the available memory)."""
  return SeriesScorer(networks["encoder"], networks["decoder"], recon_loss=recon_loss or config.recon_loss,
                      batch_size=base.score_batch_size(config, batch_size), ink_power=config.ink_power)
