import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import anogan_tf
from anogan_tf import Config, Discriminator, Generator
from anogan_tf.networks import build_networks


def test_seed_networks_have_the_seeds_weight_counts():
  # DESIGN.md section 2: 86,049 generator weights incl. BN statistics, 6,369 discriminator.
  assert Generator().count_params() == 86049
  assert Discriminator().count_params() == 6369


def test_seed_generator_layers_follow_seed_000():
  g = Generator()
  kinds = [type(layer).__name__ for layer in g.chain]
  assert kinds == ["Dense", "Reshape", "BatchNormalization", "LeakyReLU",
                   "Conv2DTranspose", "BatchNormalization", "LeakyReLU",
                   "Conv2DTranspose", "BatchNormalization", "LeakyReLU",
                   "Conv2DTranspose", "Activation"]
  assert all(layer.negative_slope == pytest.approx(0.2) for layer in g.chain if hasattr(layer, "negative_slope"))
  assert [layer.strides for layer in g.chain if type(layer).__name__ == "Conv2DTranspose"] == [(2, 2), (2, 2), (1, 1)]


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes_and_ranges(shape):
  g = Generator(image_shape=shape)
  d = Discriminator(image_shape=shape, feature_layer="flatten")
  z = np.random.default_rng(0).uniform(-1, 1, (5, 50)).astype(np.float32) * 30  # saturate tanh
  images = g(z).numpy()
  assert images.shape == (5,) + shape
  assert images.min() >= -1.0 and images.max() <= 1.0
  assert d(images).shape == (5, 1)
  assert d.features(images).shape == (5, (shape[0] // 4) * (shape[1] // 4) * 32)  # flatten of conv2


def test_feature_layer_is_the_first_conv_after_its_activation_by_default():
  d = Discriminator()
  x = np.random.default_rng(1).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
  conv = d.get_layer("conv1")(x)
  expected = np.where(conv > 0, conv, 0.2 * conv).reshape(3, -1)
  np.testing.assert_allclose(d.features(x).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["seed001", "seed002"])
def test_presets_build(preset):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "experiments", f"{preset}.flags")) as f:
    own = {line.split("=", 1)[0][2:]: line.strip().split("=", 1)[1] for line in f
           if line.startswith("--") and not line.startswith("--flagfile")}
  config = Config.from_strings(own)
  g, d = build_networks(config)
  z = np.zeros((2, config.latent_dim), np.float32)
  assert g(z).shape == (2, 28, 28, 1)
  assert d.features(g(z)).shape[0] == 2


def test_keras_round_trip_in_a_fresh_interpreter(tmp_path):
  g, d = Generator(name="generator"), Discriminator(name="discriminator")
  z = np.random.default_rng(2).uniform(-1, 1, (4, 50)).astype(np.float32)
  g.save(tmp_path / "generator.keras")
  d.save(tmp_path / "discriminator.keras")
  np.save(tmp_path / "z.npy", z)
  np.save(tmp_path / "expected.npy", d(g(z)).numpy())
  script = (
      "import anogan_tf, keras, numpy as np, sys\n"
      "p = sys.argv[1]\n"
      "g = keras.models.load_model(p + '/generator.keras')\n"
      "d = keras.models.load_model(p + '/discriminator.keras')\n"
      "out = d(g(np.load(p + '/z.npy'))).numpy()\n"
      "assert type(g).__name__ == 'Generator' and g.latent_dim == 50, type(g)\n"
      "np.testing.assert_allclose(out, np.load(p + '/expected.npy'), rtol=1e-5, atol=1e-6)\n"
      "print('ok', g.count_params())\n")
  result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["ok", "86049"]


def test_config_round_trips_through_get_config():
  g = Generator(latent_dim=12, image_shape=(32, 32, 3), filters=(8, 4), strides=(2, 2, 2), dense_channels=16)
  clone = Generator.from_config(g.get_config())
  assert clone.get_config() == g.get_config()
  assert clone.count_params() == g.count_params()


def test_package_exports_the_api():
  for name in ("Generator", "Discriminator", "LatentMapper", "Config"):
    assert hasattr(anogan_tf, name)
  assert keras.saving.get_registered_object("anogan_tf>Generator") is Generator
