"""Efficient GAN family (anogan_tf/models/egbad.py): shapes, .keras round trip, training step,
scoring. Tiny networks and synthetic blobs: seconds each."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, synthetic_images

from anogan_tf import Config
from anogan_tf.errors import AnoganError
from anogan_tf.models import egbad
from anogan_tf.nn import memory
from anogan_tf.nn.networks import batchnorm_statistics

TINY = Config(model="egbad", latent_dim=8, g_dense_channels=8, g_filters=(4,), g_strides=(2, 2),
              d_filters=(4, 8), e_filters=(4, 8), batch_size=32, lr=2e-3, lr_decay_epoch=0, lam=0.1)
TINY_BN = TINY.replace(e_batchnorm=True, d_batchnorm=True)  # every network has BN statistics


def _networks(config=TINY, seed=0):
  keras.utils.set_random_seed(seed)
  return egbad.build_networks(config)


def _clone(model):
  twin = type(model).from_config(model.get_config())
  twin.set_weights(model.get_weights())
  return twin


def _biases_before_batchnorm(model) -> set:
  paths, last = set(), None
  for layer in model._flatten_layers(include_self=False):
    if isinstance(layer, keras.layers.BatchNormalization) and last is not None:
      paths.add(last.bias.path)
    if getattr(layer, "bias", None) is not None:
      last = layer
    elif not isinstance(layer, keras.layers.Reshape):
      last = None
  return paths


def _preset(name):
  """Config of experiments/<name>.flags, nested --flagfile lines resolved (later values win)."""
  values = {}

  def read(path):
    with open(os.path.join(ROOT, path)) as f:
      for line in f:
        line = line.strip()
        if line.startswith("--flagfile="):
          read(line.split("=", 1)[1])
        elif line.startswith("--"):
          key, value = line[2:].split("=", 1)
          values[key] = value

  read(os.path.join("experiments", f"{name}.flags"))
  return Config.from_strings(values)


# --- 1. shapes and ranges

@pytest.mark.parametrize("config", [TINY, TINY_BN], ids=["plain", "batchnorm"])
def test_shapes_and_ranges(config):
  nets = _networks(config)
  assert tuple(nets) == egbad.NETWORKS
  g, e, d = nets["generator"], nets["encoder"], nets["discriminator"]
  z = np.random.default_rng(0).uniform(-1, 1, (5, 8)).astype(np.float32) * 30  # saturates tanh
  images = g(z).numpy()
  assert images.shape == (5, 28, 28, 1) and images.min() >= -1.0 and images.max() <= 1.0
  codes = e(images)
  assert codes.shape == (5, 8)
  logits = d((images, codes))
  features = d.features((images, codes))
  assert logits.shape == (5, 1) and features.shape == (5, 128)
  # f is the logit layer's input: logits = f W + b
  np.testing.assert_allclose(logits.numpy(), features.numpy() @ d.logits.kernel.numpy() + d.logits.bias.numpy(),
                             rtol=1e-5, atol=1e-5)
  # the x path is shaped like seed 000's D: 3x3 'same' convolutions with the given strides
  convs = [layer for layer in d.x_chain if isinstance(layer, keras.layers.Conv2D)]
  assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [(4, (3, 3), (2, 2)), (8, (3, 3), (2, 2))]
  assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in d.x_chain) == config.d_batchnorm


def test_presets_build_the_stated_networks():
  seed000 = _preset("egbad")
  assert seed000.model == "egbad" and seed000.lam == 0.1
  nets = egbad.build_networks(seed000)
  assert nets["generator"].count_params() == 86049  # seed 000's generator (DESIGN.md section 2)
  d, e = nets["discriminator"], nets["encoder"]
  # x path = seed 000's D convolutions: 160 + 4,640 weights
  assert sum(layer.count_params() for layer in d.x_chain) == 160 + 4640
  assert [c.filters for c in e.chain if isinstance(c, keras.layers.Conv2D)] == [16, 32]

  seed003 = _preset("egbad_seed003")
  assert (seed003.latent_dim, seed003.z_prior, seed003.batch_size, seed003.map_reduction) == (20, "normal", 64, "sum")
  nets = egbad.build_networks(seed003)
  x = np.zeros((2, 28, 28, 1), np.float32)
  codes = nets["encoder"](x)
  assert codes.shape == (2, 20)
  assert nets["generator"](codes).shape == (2, 28, 28, 1)
  assert nets["discriminator"]((x, codes)).shape == (2, 1)
  d = nets["discriminator"]
  assert d.get_layer("flatten").compute_output_shape((None, 7, 7, 64)) == (None, 3136)  # seed 003's 64 * 7 * 7


def test_noise_and_sample():
  rng = np.random.default_rng(0)
  noise = egbad.noise(rng, 6, TINY)
  assert noise.shape == (6, 2, 8) and noise.dtype == np.float32 and np.abs(noise).max() <= 1.0
  assert not np.allclose(noise[:, 0], noise[:, 1])  # the G step gets its own draw
  assert egbad.noise(rng, 4000, TINY.replace(z_prior="normal")).std() == pytest.approx(1.0, abs=0.02)
  nets = _networks()
  images = egbad.sample(nets, noise)
  assert images.shape == (6, 28, 28, 1)
  np.testing.assert_allclose(images, egbad.sample(nets, noise[:, 0]), rtol=1e-6)


def test_the_config_sets_d_widths_and_d_learning_rate():
  config = Config(model="egbad", latent_dim=8, d_z_units=24, d_joint_units=(12, 10), d_lr_scale=0.25,
                  lr=2e-3, lr_after_decay=4e-4, lr_decay_epoch=5)
  nets = egbad.build_networks(config)
  d = nets["discriminator"]
  assert (d.z_units, d.joint_units) == (24, (12, 10))
  x, z = np.zeros((2, 28, 28, 1), np.float32), np.zeros((2, 8), np.float32)
  d((x, z))
  assert d.features((x, z)).shape == (2, 10) and d.z_dense.units == 24
  trainer = egbad.make_trainer(config, nets)
  rates = lambda optimizers: [float(o.learning_rate.numpy()) for o in optimizers]  # noqa: E731
  np.testing.assert_allclose(rates(trainer.d_optimizers), [5e-4, 1e-4])
  np.testing.assert_allclose(rates(trainer.g_optimizers), [2e-3, 4e-4])
  np.testing.assert_allclose(rates(trainer.e_optimizers), [2e-3, 4e-4])


# --- 2. serialisation

def _odd_discriminator():
  """A D(x, z) with every setting off its default, so a setting get_config drops shows."""
  return egbad.BiGANDiscriminator(image_shape=(28, 28, 1), latent_dim=8, filters=(4, 6, 8), strides=(2, 1, 2),
                                  batchnorm=True, dropout=0.1, z_units=16, joint_units=(12, 10), leaky_slope=0.1,
                                  bn_momentum=0.9, name="discriminator")


def test_get_config_round_trip():
  d = _odd_discriminator()
  clone = type(d).from_config(d.get_config())
  assert clone.get_config() == d.get_config() and clone.count_params() == d.count_params()
  assert keras.saving.get_registered_object("anogan_tf>BiGANDiscriminator") is egbad.BiGANDiscriminator


def test_keras_round_trip(tmp_path):
  # From the .keras files alone (no custom_objects), D with every setting off its default; in a
  # fresh interpreter that imports only anogan_tf: test_families.py's round trip, every family's networks.
  nets = {**_networks(TINY_BN), "discriminator": _odd_discriminator()}
  rng = np.random.default_rng(2)
  x = rng.uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
  z = rng.uniform(-1, 1, (4, 8)).astype(np.float32)
  for name, model in nets.items():
    model.save(tmp_path / f"{name}.keras")
  g, e, d = nets["generator"], nets["encoder"], nets["discriminator"]
  io = dict(g=g(z).numpy(), e=e(x).numpy(), d=d((x, z)).numpy(), f=d.features((x, z)).numpy())
  g, e, d = (keras.models.load_model(tmp_path / f"{n}.keras") for n in ("generator", "encoder", "discriminator"))
  assert [type(m).__name__ for m in (g, e, d)] == ["Generator", "Encoder", "BiGANDiscriminator"]
  assert d.get_config() == nets["discriminator"].get_config() and d.count_params() == nets["discriminator"].count_params()
  check = lambda a, b: np.testing.assert_allclose(a.numpy(), io[b], rtol=1e-5, atol=1e-6)  # noqa: E731
  check(g(z), "g")
  check(e(x), "e")
  check(d((x, z)), "d")
  check(d.features((x, z)), "f")


# --- 3. training

def _steps(trainer, x, noises, phase=0):
  step = tf.function(lambda xb, nb: trainer.train_step(xb, nb, phase))
  return [{k: float(v) for k, v in step(tf.constant(x), tf.constant(n)).items()} for n in noises]


@pytest.mark.slow
def test_train_steps_change_every_network_and_d_loss_moves():
  nets = _networks(TINY_BN)
  before = {name: [w.numpy() for w in model.trainable_weights] for name, model in nets.items()}
  trainer = egbad.make_trainer(TINY_BN, nets)
  x = synthetic_images(32)
  rng = np.random.default_rng(1)
  history = _steps(trainer, x, [egbad.noise(rng, 32, TINY_BN) for _ in range(4)])
  assert all(set(h) == set(trainer.loss_names) == set(egbad.LOSS_NAMES) for h in history)
  assert all(np.isfinite(v) for h in history for v in h.values())
  assert len({round(h["d_loss"], 6) for h in history}) == 4
  for name, model in nets.items():
    changed = [not np.array_equal(a, w.numpy()) for a, w in zip(before[name], model.trainable_weights)]
    assert all(changed), name
  assert set(trainer.checkpoint_items()) == {"d_optimizer", "g_optimizer", "e_optimizer"}


@pytest.mark.slow
def test_one_step_is_the_books_d_then_g_then_e_step():
  """One train_step written out from the initial weights: D on (x, E(x)) real and (G(z1), z1) fake;
  G on a fresh z2 against the updated D; E with -log(1 - D(x, E(x))) against the updated D."""
  nets = _networks(TINY_BN)
  ref = {name: _clone(model) for name, model in nets.items()}
  trainer = egbad.make_trainer(TINY_BN, nets)
  x = synthetic_images(16, seed=3)
  noise = egbad.noise(np.random.default_rng(4), 16, TINY_BN)
  (got,) = _steps(trainer, x, [noise])

  g, e, d = ref["generator"], ref["encoder"], ref["discriminator"]
  z1, z2 = noise[:, 0], noise[:, 1]

  def bce(logits, label):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label),
                                                                  logits=logits))

  def adam_step(model, loss_fn):
    opt = keras.optimizers.Adam(TINY_BN.lr, beta_1=TINY_BN.adam_beta_1, beta_2=TINY_BN.adam_beta_2,
                                epsilon=TINY_BN.adam_epsilon)
    with tf.GradientTape() as tape:
      loss = loss_fn()
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return float(loss)

  encoded, fake = e(x, training=True), g(z1, training=True)
  want = {"d_loss": adam_step(d, lambda: bce(d((x, encoded), training=True), 1.0)
                              + bce(d((fake, z1), training=True), 0.0)),
          "g_loss": adam_step(g, lambda: bce(d((g(z2, training=True), z2), training=True), 1.0)),
          "e_loss": adam_step(e, lambda: bce(d((x, e(x, training=True)), training=True), 0.0))}
  for key, value in want.items():
    assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
  for name in egbad.NETWORKS:
    # A bias right before BN has a zero gradient up to rounding, which Adam scales up to steps of
    # any sign below lr: those are compared to within 2 * lr.
    loose = _biases_before_batchnorm(nets[name])
    for a, b in zip(nets[name].trainable_weights, ref[name].trainable_weights):
      atol = 2 * TINY_BN.lr if a.path in loose else 1e-6
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=atol, err_msg=f"{name}/{a.path}")


@pytest.mark.slow
def test_bn_statistics_move_only_in_their_own_step():
  """With learning rate 0 the weights stay, so the expected BN statistics are those of the forward
  passes each step owns: G once on z2 (not on z1 of the D step), E once on x, D on (x, E(x)) and
  on (G(z1), z1) (not in the G and E steps)."""
  config = TINY_BN
  nets = _networks(config)
  ref = {name: _clone(model) for name, model in nets.items()}
  x = synthetic_images(16, seed=5)
  noise = egbad.noise(np.random.default_rng(6), 16, config)
  trainer = egbad.make_trainer(config, nets)
  for opt in trainer.d_optimizers + trainer.g_optimizers + trainer.e_optimizers:
    opt.learning_rate.assign(0.0)  # Config refuses --lr=0, so the optimizers are set to it here
  _steps(trainer, x, [noise])
  g, e, d = ref["generator"], ref["encoder"], ref["discriminator"]
  fake = _clone(g)(noise[:, 0], training=True)  # a twin: G's own statistics stay
  g(noise[:, 1], training=True)
  encoded = e(x, training=True)
  d((x, encoded), training=True)
  d((fake, noise[:, 0]), training=True)
  for name in egbad.NETWORKS:
    got, want = batchnorm_statistics(nets[name]), batchnorm_statistics(ref[name])
    assert got and len(got) == len(want), name
    for a, b in zip(got, want):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{name}/{a.path}")


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed():
  x = synthetic_images(32, seed=7)

  def run(seed):  # the same noise for every seed: only the initial weights depend on it
    nets = _networks(TINY, seed=seed)
    rng = np.random.default_rng(0)
    return _steps(egbad.make_trainer(TINY, nets), x, [egbad.noise(rng, 32, TINY) for _ in range(3)])

  first = run(0)
  assert run(0) == first
  assert run(1) != first


@pytest.mark.slow
def test_second_phase_uses_fresh_optimizers_at_the_decayed_rate():
  config = TINY.replace(lr_decay_epoch=3, lr_after_decay=1e-4)
  trainer = egbad.make_trainer(config, _networks(config))
  assert trainer.n_phases == 2 and [trainer.phase(ep) for ep in (0, 2, 3, 9)] == [0, 0, 1, 1]
  assert float(trainer.g_optimizers[1].learning_rate) == pytest.approx(1e-4)
  assert len(trainer.checkpoint_items()) == 6
  _steps(trainer, synthetic_images(8), [egbad.noise(np.random.default_rng(0), 8, config)], phase=1)
  assert int(trainer.d_optimizers[1].iterations) == 1 and int(trainer.d_optimizers[0].iterations) == 0


# --- 4. scoring

@pytest.fixture(scope="module")
def trained():
  """TINY_BN trained for 152 steps (19 epochs of 8 batches) on 256 blobs: (networks, held-out normal blobs)."""
  nets = _networks(TINY_BN, seed=0)
  trainer = egbad.make_trainer(TINY_BN, nets)
  x = synthetic_images(256, seed=10)
  rng = np.random.default_rng(0)

  @tf.function
  def epoch(x_all, permutation, noise_all):
    for b in tf.range(8):
      idx = permutation[b * 32:(b + 1) * 32]
      trainer.train_step(tf.gather(x_all, idx), tf.gather(noise_all, idx), 0)

  for _ in range(19):
    epoch(tf.constant(x), tf.constant(rng.permutation(256).astype(np.int32)), tf.constant(egbad.noise(rng, 256, TINY_BN)))
  return nets, synthetic_images(16, seed=11)


@pytest.mark.slow
def test_off_manifold_images_score_higher(trained):
  nets, normal = trained
  rng = np.random.default_rng(12)
  noise_images = rng.uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
  inverted = -normal[:8]
  scorer = egbad.make_scorer(TINY_BN, nets)
  normal_scores = scorer.score(normal).score
  assert scorer.score(noise_images).score.min() > normal_scores.max()
  assert scorer.score(inverted).score.min() > normal_scores.max()


@pytest.mark.slow
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_score_parts_and_reduction(trained, reduction):
  nets, normal = trained
  result = egbad.make_scorer(TINY_BN, nets, reduction=reduction, lam=0.3).score(normal)
  assert len(result) == 16 and result.reconstruction.shape == normal.shape
  assert result.extras["z"].shape == (16, 8)
  np.testing.assert_allclose(result.residual_map, np.abs(normal - result.reconstruction), atol=1e-6)
  pixels = result.residual_map.reshape(16, -1)
  np.testing.assert_allclose(result.parts["residual"], pixels.sum(1) if reduction == "sum" else pixels.mean(1),
                             rtol=1e-5)
  np.testing.assert_allclose(result.score, 0.7 * result.parts["residual"] + 0.3 * result.parts["discrimination"],
                             rtol=1e-5)
  # E(x) is z, G(E(x)) the reconstruction, f compared at (x, z) and (G(z), z)
  g, d = nets["generator"], nets["discriminator"]
  np.testing.assert_allclose(result.extras["z"], nets["encoder"](normal).numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(result.reconstruction, g(result.extras["z"]).numpy(), rtol=1e-5, atol=1e-5)
  features = np.abs(d.features((normal, result.extras["z"])).numpy()
                    - d.features((result.reconstruction, result.extras["z"])).numpy())
  np.testing.assert_allclose(result.parts["discrimination"], features.sum(1) if reduction == "sum" else features.mean(1),
                             rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("images, words", [
    (np.zeros((2, 32, 32, 3), np.float32), "shape"),
    (np.zeros((2, 28, 28, 1), np.uint8), "dtype"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN"),
    (np.full((2, 28, 28, 1), 255.0, np.float32), "outside [-1, 1]"),
    (np.zeros((0, 28, 28, 1), np.float32), "no images"),
])
def test_bad_input_is_a_one_line_error(images, words):
  scorer = egbad.make_scorer(TINY, _networks())
  with pytest.raises(AnoganError) as info:
    scorer.score(images)
  assert words in str(info.value) and "\n" not in str(info.value)


def test_make_scorer_settings():
  nets = _networks()
  scorer = egbad.make_scorer(TINY.replace(map_reduction="sum", map_batch_size=7), nets)
  assert (scorer.lam, scorer.reduction, scorer.batch_size) == (0.1, "sum", 7)
  auto = egbad.make_scorer(TINY, nets)  # map_batch_size 0: from the memory its networks' activations need
  assert auto.batch_size == memory.fit_batch_size(auto.activation_floats_per_image())
  with pytest.raises(AnoganError, match="batch_size=-1"):
    egbad.make_scorer(TINY, nets, batch_size=-1)
  with pytest.raises(AnoganError, match="no setting steps"):
    egbad.make_scorer(TINY, nets, steps=3)
  with pytest.raises(AnoganError, match="outside"):
    egbad.make_scorer(TINY, nets, lam=2.0)
  # 2-D grayscale images are taken as (N, h, w) with one channel
  assert len(egbad.make_scorer(TINY, nets).score(np.zeros((3, 28, 28), np.float32))) == 3
