"""The GAN's settings for training on few pictures: spectral normalisation of D (nn/spectral.py),
DiffAugment (nn/augment.py), the WGAN-GP loss (nn/losses.py) and how the GAN families' trainers
(AnoGAN's, EGBAD's) use them; their defaults keep the sources' GANs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anogan_tf import models
from anogan_tf.config import Config
from anogan_tf.errors import AnoganError
from anogan_tf.models.egbad import BiGANDiscriminator
from anogan_tf.nn import augment, losses
from anogan_tf.nn.networks import Discriminator
from anogan_tf.nn.spectral import SpectralNormalization


def largest_singular_value(kernel) -> float:
  kernel = np.asarray(kernel)
  return float(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0])


@pytest.mark.parametrize("layer, shape", [(lambda: keras.layers.Dense(7), (5, 12)),
                                          (lambda: keras.layers.Conv2D(6, 3, padding="same"), (2, 8, 8, 4))])
def test_spectral_norm_brings_the_largest_singular_value_to_one(layer, shape):
  wrapped = SpectralNormalization(layer())
  x = tf.random.stateless_uniform(shape, (1, 2))
  wrapped(x)  # builds
  kernel = wrapped.layer.kernel
  kernel.assign(kernel * 25.0)  # far from 1
  assert largest_singular_value(kernel) > 5
  for _ in range(30):  # the power iteration, one step per training pass
    wrapped(x, training=True)
  assert largest_singular_value(wrapped.normalized_kernel()) == pytest.approx(1.0, abs=0.02)
  u = wrapped.u.numpy().copy()
  wrapped(x, training=False)
  np.testing.assert_array_equal(wrapped.u.numpy(), u)  # scoring leaves the weights alone
  with tf.GradientTape() as tape:
    out = tf.reduce_sum(wrapped(x, training=True) ** 2)
  grad = tape.gradient(out, wrapped.layer.kernel)
  assert grad is not None and np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).max() > 0


def test_a_spectrally_normalised_discriminator_keeps_its_layer_names_and_saves(tmp_path):
  d = Discriminator(image_shape=(32, 32, 3), spectral_norm=True, name="discriminator")
  plain = Discriminator(image_shape=(32, 32, 3), name="discriminator")
  assert [layer.name for layer in d.chain] == [layer.name for layer in plain.chain]
  x = tf.random.stateless_uniform((4, 32, 32, 3), (3, 4), -1, 1)
  d(x, training=True)
  d.save(tmp_path / "d.keras")
  loaded = keras.models.load_model(tmp_path / "d.keras")
  assert loaded.spectral_norm and isinstance(loaded.chain[0], SpectralNormalization)
  np.testing.assert_allclose(loaded(x).numpy(), d(x).numpy(), rtol=1e-5, atol=1e-6)
  assert d.features(x, layer="act1").shape == plain.features(x, layer="act1").shape


def test_a_spectrally_normalised_bigan_discriminator_wraps_every_weight_keeps_its_names_and_saves(tmp_path):
  d = BiGANDiscriminator(image_shape=(16, 16, 3), latent_dim=4, spectral_norm=True, name="discriminator")
  plain = BiGANDiscriminator(image_shape=(16, 16, 3), latent_dim=4, name="discriminator")
  layers = lambda net: net.x_chain + [net.z_dense] + net.joint_chain + [net.logits]  # noqa: E731
  assert [layer.name for layer in layers(d)] == [layer.name for layer in layers(plain)]
  weighted = [layer for layer in layers(d) if layer.weights]
  assert weighted and all(isinstance(layer, SpectralNormalization) for layer in weighted)
  pair = (tf.random.stateless_uniform((4, 16, 16, 3), (3, 4), -1, 1), tf.random.stateless_normal((4, 4), (5, 6)))
  d(pair, training=True)
  d.save(tmp_path / "d.keras")
  loaded = keras.models.load_model(tmp_path / "d.keras")
  assert loaded.spectral_norm and isinstance(loaded.logits, SpectralNormalization)
  np.testing.assert_allclose(loaded(pair).numpy(), d(pair).numpy(), rtol=1e-5, atol=1e-6)
  assert d.features(pair).shape == plain.features(pair).shape


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_is_seeded_varies_per_image_and_is_differentiable(policy):
  ops = augment.parse_policy(policy)
  x = tf.random.stateless_uniform((16, 16, 16, 3), (5, 6), 0.1, 1.0)  # no zeros: padding and cutout show
  first = augment.diff_augment(x, ops, tf.random.Generator.from_seed(7))
  again = augment.diff_augment(x, ops, tf.random.Generator.from_seed(7))
  np.testing.assert_array_equal(first.numpy(), again.numpy())
  change = (first - x).numpy().reshape(16, -1)
  assert np.abs(change).max() > 0
  assert len({tuple(np.round(row[:64], 5)) for row in change}) > 1  # each image its own draw
  weights = tf.random.stateless_normal(x.shape, (8, 9))
  with tf.GradientTape() as tape:
    tape.watch(x)
    out = tf.reduce_sum(augment.diff_augment(x, ops, tf.random.Generator.from_seed(7)) * weights)
  grad = tape.gradient(out, x)
  assert grad is not None and np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).max() > 0


def test_translation_moves_pixels_and_cutout_zeros_a_square():
  x = tf.reshape(tf.range(1, 2 * 16 * 16 + 1, dtype=tf.float32), (2, 16, 16, 1))  # every pixel distinct
  moved = augment.translation(x, tf.random.Generator.from_seed(1)).numpy()
  values = set(x.numpy().ravel())
  assert set(moved.ravel()) <= values | {0.0}  # whole pixels, or the zero border
  cut = augment.cutout(tf.ones((8, 16, 16, 1)), tf.random.Generator.from_seed(2)).numpy()
  zeros = (cut == 0).reshape(8, -1).sum(1)
  assert (zeros >= 4 * 4).all() and (zeros <= 8 * 8).all()  # a square of side 8, clipped at the border


def test_unknown_diffaugment_entries_and_impossible_gan_settings_are_refused():
  with pytest.raises(AnoganError, match="--diffaugment entry"):
    Config(diffaugment="color,flip")
  with pytest.raises(AnoganError, match="d_batchnorm"):
    Config(gan_loss="wgan_gp", d_batchnorm=True)
  with pytest.raises(AnoganError, match="d_step"):
    Config(gan_loss="wgan_gp", d_step="separate")
  with pytest.raises(AnoganError, match="not egbad's"):
    Config(model="egbad", gan_loss="wgan_gp")
  for setting in ({"diffaugment": "color"}, {"d_spectral_norm": True}):
    with pytest.raises(AnoganError, match="which --model=ae has not; use --model=anogan or --model=egbad"):
      Config(model="ae", **setting)
  default = Config()
  assert (default.gan_loss, default.diffaugment, default.d_spectral_norm) == ("bce", "", False)


def test_the_gradient_penalty_of_a_linear_critic_is_its_slope_minus_one_squared():
  a = tf.Variable(tf.random.stateless_normal((1, 4, 4, 2), (1, 1)))
  a.assign(a * 3.0 / tf.norm(a))  # |grad| = 3 everywhere
  critic = lambda images: tf.reduce_sum(images * a, axis=[1, 2, 3])  # noqa: E731
  real = tf.random.stateless_uniform((5, 4, 4, 2), (2, 2))
  fake = tf.random.stateless_uniform((5, 4, 4, 2), (3, 3))
  epsilon = tf.random.stateless_uniform((5, 1, 1, 1), (4, 4))
  with tf.GradientTape() as tape:
    penalty = losses.gradient_penalty(critic, real, fake, epsilon)
  assert float(penalty) == pytest.approx(4.0, rel=1e-4)
  grad = tape.gradient(penalty, a)  # d/da (|a| - 1)^2 = 2 (|a| - 1) a / |a|
  np.testing.assert_allclose(grad.numpy(), (2 * 2 * a / 3.0).numpy(), rtol=1e-3, atol=1e-5)
  d_loss, g_loss = losses.wasserstein_losses(tf.constant([[1.0], [3.0]]), tf.constant([[0.5], [-0.5]]))
  assert float(d_loss) == pytest.approx(-2.0) and float(g_loss) == pytest.approx(0.0)


# What D sees in one train_step, in order ("x": the real batch; "fake": a batch of G's): AnoGAN's D
# step (real, fake) and each of its 2 G steps; EGBAD's D step (the images of (x, E(x)) and (G(z1), z1)),
# its G step (G(z2)) and its E step (x, E(x)). AnoGAN's with the penalty, which draws on the same generator.
@pytest.mark.parametrize("model, settings, seen_order", [
    ("anogan", dict(gan_loss="wgan_gp"), ("x", "fake", "fake", "fake")),
    ("egbad", {}, ("x", "fake", "fake", "x"))])
def test_the_trainer_augments_real_and_fake_alike(monkeypatch, model, settings, seen_order):
  config = Config(model=model, dataset="folder", data_dir="unused", image_size=32, channels=1, batch_size=8,
                  d_spectral_norm=True, diffaugment="translation,cutout", **settings)
  family = models.family(model)
  networks = family.build_networks(config)
  trainer = family.make_trainer(config, networks)
  assert "augment_rng" in trainer.checkpoint_items()
  assert trainer.collapse_loss == (None if config.gan_loss == "wgan_gp" else "d_loss")
  seen = []
  original = trainer.augmented
  monkeypatch.setattr(trainer, "augmented", lambda images: seen.append(images) or original(images))
  x = tf.random.stateless_uniform((8, 32, 32, 1), (1, 2), -1, 1)
  noise = tf.constant(family.noise(np.random.default_rng(0), 8, config))
  d_weights = [w.numpy().copy() for w in networks["discriminator"].trainable_weights]
  out = trainer.train_step(x, noise, 0)
  assert all(np.isfinite(float(v)) for v in out.values())
  assert len(seen) == len(seen_order)
  for images, what in zip(seen, seen_order):
    assert images.shape == x.shape
    assert np.array_equal(images.numpy(), x.numpy()) == (what == "x")
  assert any(np.abs(w.numpy() - w0).max() > 0 for w, w0 in zip(networks["discriminator"].trainable_weights, d_weights))
  plain = family.make_trainer(Config(model=model), family.build_networks(Config(model=model)))
  assert "augment_rng" not in plain.checkpoint_items() and plain.rng is None


def test_the_default_trainer_keeps_seed_000s_checkpoint_items():
  config = Config()
  trainer = models.family("anogan").make_trainer(config, models.family("anogan").build_networks(config))
  assert set(trainer.checkpoint_items()) == {"d_optimizer", "g_optimizer", "d_optimizer_after_decay",
                                              "g_optimizer_after_decay"}
  assert trainer.collapse_loss == "d_loss" and trainer.rng is None


@pytest.mark.slow
def test_a_resumed_run_with_diffaugment_and_the_penalty_equals_an_uninterrupted_one(tmp_path):
  from conftest import synthetic_images

  from anogan_tf import train_lib
  from anogan_tf.data import OneClassData
  x = synthetic_images(32)
  data = OneClassData(x_train=x, x_test=x[:8], y_test=np.arange(8) % 2, classes_test=np.zeros(8, int),
                      test_indices=np.arange(8))
  # One learning-rate phase (resuming into the next is test_families.py's): epoch 1 of 2 resumes on
  # the restored Adam moments, spectral norms' power-iteration vectors and DiffAugment's generator.
  # (EGBAD's, after a kill -9: test_reliability.py's kill of every family.)
  config = Config(latent_dim=8, g_dense_channels=8, g_filters=(8, 4), d_filters=(4, 8), batch_size=16, lr=5e-3,
                  lr_decay_epoch=0, seed=0, deterministic=True, epochs=2, d_spectral_norm=True, gan_loss="wgan_gp",
                  diffaugment="color,translation,cutout")
  straight = train_lib.train(config, str(tmp_path / "straight"), data=data, progress=False)
  train_lib.train(config.replace(epochs=1), str(tmp_path / "resumed"), data=data, progress=False)
  resumed = train_lib.train(config, str(tmp_path / "resumed"), data=data, progress=False)
  drop = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
  assert drop(straight) == drop(resumed)
  for net in ("generator", "discriminator"):
    a = keras.models.load_model(tmp_path / "straight" / f"{net}.keras").weights
    b = keras.models.load_model(tmp_path / "resumed" / f"{net}.keras").weights
    for u, v in zip(a, b):
      np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=net)
