import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import anogan_tf
from anogan_tf import AnoganError, Config, Discriminator, Generator
from anogan_tf.models import anogan


def test_seed_networks_have_the_seeds_weight_counts():
  # DESIGN.md section 2: 86,049 generator weights incl. BN statistics, 6,369 discriminator.
  assert Generator().count_params() == 86049
  assert Discriminator().count_params() == 6369


def test_seed_generator_layers_follow_seed_000():
  g = Generator()
  kinds = [type(layer).__name__ for layer in g.chain]
  # Seed 000's tf.layers.batch_normalization ran the fused kernel (fused=None, 4-D inputs).
  assert kinds == ["Dense", "Reshape", "FusedBatchNormalization", "LeakyReLU",
                   "Conv2DTranspose", "FusedBatchNormalization", "LeakyReLU",
                   "Conv2DTranspose", "FusedBatchNormalization", "LeakyReLU",
                   "Conv2DTranspose", "Activation"]
  assert all(layer.negative_slope == pytest.approx(0.2) for layer in g.chain if hasattr(layer, "negative_slope"))
  assert [layer.strides for layer in g.chain if type(layer).__name__ == "Conv2DTranspose"] == [(2, 2), (2, 2), (1, 1)]


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes_and_ranges(shape):
  g = Generator(image_shape=shape)
  d = Discriminator(image_shape=shape)
  z = np.random.default_rng(0).uniform(-1, 1, (5, 50)).astype(np.float32) * 30  # saturate tanh
  images = g(z).numpy()
  assert images.shape == (5,) + shape
  assert images.min() >= -1.0 and images.max() <= 1.0
  assert d(images).shape == (5, 1)
  assert d.features(images, layer="flatten").shape == (5, (shape[0] // 4) * (shape[1] // 4) * 32)  # flatten of conv2


def test_feature_layer_is_the_first_conv_after_its_activation_by_default():
  d = Discriminator()
  x = np.random.default_rng(1).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
  conv = d.get_layer("conv1")(x)
  expected = np.where(conv > 0, conv, 0.2 * conv).reshape(3, -1)
  np.testing.assert_allclose(d.features(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_features_reads_any_layer_without_changing_the_saved_discriminator():
  d = Discriminator()
  x = np.random.default_rng(1).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
  assert d.feature_layers == ("conv1", "act1", "conv2", "act2", "flatten")
  np.testing.assert_array_equal(d.features(x, layer="act1").numpy(), d.features(x).numpy())
  conv2 = d.features(x, layer="conv2").numpy()
  act2 = d.features(x, layer="act2").numpy()
  assert conv2.shape == act2.shape == (3, 7 * 7 * 32)
  np.testing.assert_allclose(act2, np.where(conv2 > 0, conv2, 0.2 * conv2), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(d.features(x, layer="flatten").numpy(), act2)
  with pytest.raises(AnoganError, match=re.escape("unknown --feature_layer 'logits'; use one of conv1, act1, conv2, act2, flatten")):
    d.features(x, layer="logits")
  for other in (Discriminator(batchnorm=True, dropout=0.25, filters=(4, 8, 8), strides=(2, 2, 1)),
                Discriminator(batchnorm=True),  # the names Config.check validates --feature_layer with
                Discriminator(batchnorm=True, batchnorm_first=False, zero_pad_after=(2,), dropout=0.25)):
    assert other.feature_layers == tuple(layer.name for layer in other.chain[:-1])
  # What D saves is its structure; which layer f() reads is the mapper's setting, not saved with D.
  assert sorted(d.get_config()) == ["batchnorm", "batchnorm_first", "bn_momentum", "dropout", "dtype",
                                    "filters", "image_shape", "leaky_slope", "name", "strides",
                                    "trainable", "zero_pad_after"]


def test_a_discriminator_saved_with_a_feature_layer_still_loads():
  # Earlier versions saved feature_layer in D's config (discriminator.keras of existing workdirs).
  d = Discriminator(filters=(4, 8))
  old = {**d.get_config(), "feature_layer": "flatten"}
  loaded = Discriminator.from_config(old)
  assert loaded.get_config() == d.get_config() and not hasattr(loaded, "feature_layer")


@pytest.mark.parametrize("make, message", [
    (lambda: Generator(upsampling="transposed"), "unknown upsampling 'transposed'; use transpose or nearest"),
    (lambda: Generator(upsampling="Nearest"), "unknown upsampling 'Nearest'; use transpose or nearest"),
    (lambda: Generator(activation="leakyrelu"), "unknown activation 'leakyrelu'; use leaky_relu or relu"),
    (lambda: Generator(strides=(2, 0, 1)), "generator strides [2, 0, 1] must all be 1 or more; fix --g_strides"),
    (lambda: Generator(strides=(2, -2, 1)), "generator strides [2, -2, 1] must all be 1 or more; fix --g_strides"),
    (lambda: Generator(filters=(16, 0)), "generator filters [16, 0] must all be 1 or more; fix --g_filters"),
    (lambda: Generator(dense_channels=0), "generator dense_channels 0 must be 1 or more"),
    (lambda: Discriminator(strides=(0, 2)), "discriminator strides [0, 2] must all be 1 or more; fix --d_strides"),
    (lambda: Discriminator(filters=(16, -1)), "discriminator filters [16, -1] must all be 1 or more"),
    (lambda: Discriminator(dropout=1.0), "discriminator dropout 1.0 is outside [0, 1); fix --d_dropout"),
    (lambda: Discriminator().features(np.zeros((1, 28, 28, 1), np.float32), layer="act9"),
     "unknown --feature_layer 'act9'; use one of conv1, act1, conv2"),
], ids=["upsampling", "upsampling_case", "activation", "g_zero_stride", "g_negative_stride", "g_filters",
        "g_dense_channels", "d_zero_stride", "d_filters", "d_dropout", "feature_layer"])
def test_the_networks_reject_unknown_or_impossible_settings(make, message):
  # Python API users get the same clear errors as the command line; nothing falls back silently.
  with pytest.raises(AnoganError, match=re.escape(message)):
    make()


@pytest.mark.parametrize("preset", ["seed001", "seed002"])
def test_presets_build(preset):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "experiments", f"{preset}.flags")) as f:
    own = {line.split("=", 1)[0][2:]: line.strip().split("=", 1)[1] for line in f
           if line.startswith("--") and not line.startswith("--flagfile")}
  config = Config.from_strings(own)
  networks = anogan.build_networks(config)
  g, d = networks["generator"], networks["discriminator"]
  z = np.zeros((2, config.latent_dim), np.float32)
  assert g(z).shape == (2, 28, 28, 1)
  assert d.features(g(z)).shape[0] == 2


def test_keras_round_trip(tmp_path):
  # From the .keras files alone (no custom_objects); in a fresh interpreter that imports only
  # anogan_tf: test_families.py's round trip, every family's networks.
  g, d = Generator(name="generator"), Discriminator(name="discriminator")
  z = np.random.default_rng(2).uniform(-1, 1, (4, 50)).astype(np.float32)
  g.save(tmp_path / "generator.keras")
  d.save(tmp_path / "discriminator.keras")
  expected = d(g(z)).numpy()
  g, d = (keras.models.load_model(tmp_path / f"{name}.keras") for name in ("generator", "discriminator"))
  assert type(g) is Generator and type(d) is Discriminator and g.latent_dim == 50, type(g)
  np.testing.assert_allclose(d(g(z)).numpy(), expected, rtol=1e-5, atol=1e-6)
  assert g.count_params() == 86049


def test_config_round_trips_through_get_config():
  g = Generator(latent_dim=12, image_shape=(32, 32, 3), filters=(8, 4), strides=(2, 2, 2), dense_channels=16)
  clone = Generator.from_config(g.get_config())
  assert clone.get_config() == g.get_config()
  assert clone.count_params() == g.count_params()


def test_package_exports_the_api():
  for name in ("Generator", "Discriminator", "LatentMapper", "Config"):
    assert hasattr(anogan_tf, name)
  assert keras.saving.get_registered_object("anogan_tf>Generator") is Generator


def _preset(name):
  from anogan_tf.cli import flags as anogan_flags
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return anogan_flags.config_from_args([f"--flagfile={os.path.join(root, 'experiments', name + '.flags')}"])


def test_seed002_networks_are_keras_gans_dcgan():
  # Keras-GAN's dcgan.py, counted from its layers: D 393,729 and G 856,193 parameters (BN moving
  # statistics included, as Keras' model.summary counts them).
  networks = anogan.build_networks(_preset("seed002"))
  g, d = networks["generator"], networks["discriminator"]
  assert [layer.name for layer in d.chain] == [
      "conv1", "act1", "drop1", "conv2", "pad2", "bn2", "act2", "drop2", "conv3", "bn3", "act3", "drop3",
      "conv4", "bn4", "act4", "drop4", "flatten", "logits"]
  assert d.count_params() == 393_729
  assert d.features(np.zeros((1, 28, 28, 1), np.float32), layer="pad2").shape == (1, 8 * 8 * 64)
  assert [layer.name for layer in g.chain] == [
      "dense", "reshape", "act0", "upsample1", "up1", "bn1", "act1", "upsample2", "up2", "bn2", "act2",
      "output", "tanh"]
  assert g.get_layer("act0").__class__.__name__ == "ReLU"
  assert g.count_params() == 856_193


def test_seed001_generator_normalises_the_dense_outputs_then_reshapes():
  # Linear -> BatchNorm1d(g_dim*8*7*7) -> ReLU -> view, then the transposed convolutions.
  g = anogan.build_networks(_preset("seed001"))["generator"]
  assert [layer.name for layer in g.chain][:4] == ["dense", "bn0", "act0", "reshape"]
  assert g.get_layer("bn0").moving_mean.shape == (128 * 7 * 7,)
  assert g.get_layer("act0").__class__.__name__ == "ReLU"
  assert g.get_layer("act1").__class__.__name__ == "LeakyReLU"
  z = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
  out = g(z, training=True)
  assert out.shape == (4, 28, 28, 1) and float(tf.reduce_max(tf.abs(out))) <= 1.0
