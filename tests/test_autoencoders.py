"""The autoencoder and VAE families (anogan_tf/models/ae.py, vae.py) in detail: shapes and ranges,
.keras round trip, short training, scoring, on tiny networks and synthetic blobs. The training
loop here is the tests' own (a compiled loop over train_step, many steps for little time);
tests/test_families.py runs every family through the shared driver, evaluate and score."""


import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import synthetic_images

from anogan_tf import AnoganError, Config
from anogan_tf.models import ae, vae

FAMILIES = {"ae": ae, "vae": vae}
# Tiny networks, seed 000's layout. BN momentum 0.5: the moving statistics that inference-mode
# scoring uses settle within a few dozen steps (0.99 needs hundreds).
TINY = dict(latent_dim=8, g_dense_channels=8, g_filters=(8, 4), e_filters=(8, 8), bn_momentum=0.5,
            batch_size=32, lr=3e-3, lr_decay_epoch=0, seed=0)
STEPS = 60


def tiny_config(name, **changes):
  return Config(model=name, **{**TINY, **changes})


def train(family, config, x, steps, seed=0):
  """Builds the family's networks from `seed` and runs `steps` train_step calls in one compiled
  loop (random batches of x, the family's noise); returns networks, trainer and the losses
  {name: (steps,)}."""
  keras.utils.set_random_seed(seed)
  networks = family.build_networks(config)
  trainer = family.make_trainer(config, networks)
  rng = np.random.default_rng(seed)
  drawn = [(x[rng.choice(len(x), config.batch_size, replace=False)], family.noise(rng, config.batch_size, config))
           for _ in range(steps)]  # step by step: the first k steps do not depend on `steps`
  batches, noises = (np.stack(parts) for parts in zip(*drawn))

  @tf.function
  def run(batches, noises):
    history = {name: tf.TensorArray(tf.float32, size=steps) for name in trainer.loss_names}
    for i in tf.range(steps):
      out = trainer.train_step(batches[i], noises[i], 0)
      history = {name: history[name].write(i, out[name]) for name in trainer.loss_names}
    return {name: values.stack() for name, values in history.items()}

  losses = run(tf.constant(batches), tf.constant(noises))
  return networks, trainer, {name: v.numpy() for name, v in losses.items()}


@pytest.fixture(scope="module")
def trained():
  """Each family trained once for STEPS steps on 256 blobs: {name: (config, networks, losses)}."""
  x = synthetic_images(256, seed=0)
  out = {}
  for name, family in FAMILIES.items():
    config = tiny_config(name)
    networks, _, losses = train(family, config, x, STEPS)
    out[name] = (config, networks, losses)
  return out


# --- 1. shapes and ranges

@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_and_ranges(name):
  family = FAMILIES[name]
  config = tiny_config(name)
  networks = family.build_networks(config)
  assert tuple(networks) == family.NETWORKS == ("encoder", "decoder")
  heads = {"ae": 1, "vae": 2}[name]
  x = synthetic_images(5)
  code = networks["encoder"](x).numpy()
  assert code.shape == (5, heads * 8)
  if name == "vae":
    mean, log_var = vae.split_code(code, 8)
    assert mean.shape == log_var.shape == (5, 8)
    np.testing.assert_array_equal(np.concatenate([mean, log_var], axis=1), code)
  z = np.random.default_rng(0).normal(0, 30, (5, 8)).astype(np.float32)  # saturates tanh
  decoded = networks["decoder"](z).numpy()
  assert decoded.shape == (5, 28, 28, 1) and decoded.min() >= -1 and decoded.max() <= 1

  result = family.make_scorer(config, networks).score(x)
  assert result.score.shape == (5,) and np.isfinite(result.score).all()
  assert result.reconstruction.shape == result.residual_map.shape == (5, 28, 28, 1)
  assert result.reconstruction.min() >= -1 and result.reconstruction.max() <= 1
  np.testing.assert_allclose(result.residual_map, np.abs(x - result.reconstruction), atol=1e-6)
  assert result.extras["z"].shape == (5, 8)
  assert sorted(result.parts) == sorted({"ae": ["reconstruction"], "vae": ["reconstruction", "kl"]}[name])

  rng = np.random.default_rng(1)
  noise = family.noise(rng, 1000, config)
  if name == "ae":
    assert noise.shape == (1000, 0) and family.sample(networks, noise) is None
  else:
    assert noise.shape == (1000, 8) and noise.dtype == np.float32
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05  # N(0, 1), the prior
    samples = family.sample(networks, noise[:4])
    assert samples.shape == (4, 28, 28, 1) and samples.min() >= -1 and samples.max() <= 1


# --- 2. .keras round trip in a fresh interpreter

@pytest.mark.slow
def test_keras_round_trip(trained, tmp_path):
  # From the .keras files alone (no custom_objects): the encoder and decoder are anogan_tf's
  # registered Encoder and Generator. In a fresh interpreter that imports only anogan_tf:
  # test_families.py's round trip, every family's networks.
  x = synthetic_images(6, seed=3)
  for name, heads in (("ae", 1), ("vae", 2)):
    config, networks, _ = trained[name]
    for net in ("encoder", "decoder"):
      networks[net].save(tmp_path / f"{name}_{net}.keras")
    expected = FAMILIES[name].make_scorer(config, networks).score(x).reconstruction
    e, d = (keras.models.load_model(tmp_path / f"{name}_{net}.keras") for net in ("encoder", "decoder"))
    assert (type(e).__name__, type(d).__name__, e.heads, e.latent_dim) == ("Encoder", "Generator", heads, 8)
    code = e(x, training=False).numpy()[:, :8]  # the VAE's posterior mean
    np.testing.assert_allclose(d(code, training=False).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert e.count_params() + d.count_params() == sum(n.count_params() for n in networks.values())


# --- 3. short training

@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_short_training_lowers_the_loss_and_is_deterministic(name, trained):
  config, networks, losses = trained[name]
  family = FAMILIES[name]
  assert set(losses) == set(family.make_trainer(config, networks).loss_names)
  for values in losses.values():
    assert np.isfinite(values).all()
  assert losses["loss"][-5:].mean() < 0.5 * losses["loss"][:5].mean()
  if name == "vae":
    assert (losses["kl"] >= 0).all()
    np.testing.assert_allclose(losses["loss"], losses["reconstruction"] + config.kl_weight * losses["kl"], rtol=1e-5)
  # The same seed again, a few steps: the same numbers.
  x = synthetic_images(256, seed=0)
  _, _, again = train(family, config, x, 5)
  for key, values in again.items():
    np.testing.assert_array_equal(values, losses[key][:5], err_msg=key)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_vae_samples_with_the_drivers_noise_and_the_ae_ignores_it(name):
  family = FAMILIES[name]
  config = tiny_config(name)
  x = tf.constant(synthetic_images(8))
  rng = np.random.default_rng(0)
  first, second = (tf.constant(family.noise(rng, 8, config)) for _ in range(2))
  if name == "ae":
    second = tf.constant(np.ones((8, 7), np.float32))  # anything: ignored
  losses = []
  for noise in (first, first, second):
    keras.utils.set_random_seed(0)
    trainer = family.make_trainer(config, family.build_networks(config))
    losses.append(float(trainer.train_step(x, noise, 0)["loss"]))
  assert losses[0] == losses[1]
  assert (losses[0] != losses[2]) == (name == "vae")


def test_learning_rate_phases_follow_lr_decay_epoch():
  for name, family in FAMILIES.items():
    networks = family.build_networks(tiny_config(name))
    decayed = family.make_trainer(tiny_config(name, lr_decay_epoch=3, lr_after_decay=1e-4), networks)
    assert decayed.n_phases == 2 and [decayed.phase(e) for e in range(5)] == [0, 0, 0, 1, 1]
    assert sorted(decayed.checkpoint_items()) == ["optimizer", "optimizer_after_decay"]
    assert float(decayed.optimizers[1].learning_rate) == pytest.approx(1e-4)
    assert decayed.optimizers[0].epsilon == 1e-8  # Config's adam_epsilon (TF1), not Keras' 1e-7
    constant = family.make_trainer(tiny_config(name), networks)
    assert constant.n_phases == 1 and constant.phase(100) == 0 and list(constant.checkpoint_items()) == ["optimizer"]


def numpy_kl(mean, log_var):
  """D_KL(N(mu, sigma^2) || N(0, 1)) summed over latent dims: seed 004's appendix with
  mu_2 = 0, sigma_2 = 1: log(1 / sigma) + (sigma^2 + mu^2) / 2 - 1/2."""
  sigma = np.exp(0.5 * log_var)
  return np.sum(np.log(1 / sigma) + (sigma ** 2 + mean ** 2) / 2 - 0.5, axis=1)


def test_kl_is_the_divergence_not_seed_004s_negative():
  rng = np.random.default_rng(0)
  mean = rng.normal(0, 1.5, (6, 5)).astype(np.float32)
  log_var = rng.normal(0, 1.0, (6, 5)).astype(np.float32)
  mean[0], log_var[0] = 0, 0  # the prior itself: KL 0
  kl = vae.kl_divergence(tf.constant(mean), tf.constant(log_var)).numpy()
  assert kl.shape == (6,)
  np.testing.assert_allclose(kl, numpy_kl(mean, log_var), rtol=1e-5, atol=1e-6)
  assert kl[0] == pytest.approx(0, abs=1e-6) and (kl[1:] > 0).all()


@pytest.mark.slow
def test_scored_kl_and_elbo_match_numpy_on_the_encoders_outputs(trained):
  config, networks, _ = trained["vae"]
  x = synthetic_images(10, seed=4)
  mean, log_var = (t.numpy() for t in vae.split_code(networks["encoder"](x, training=False), 8))
  elbo = vae.make_scorer(config, networks, vae_score="elbo", kl_weight=0.5).score(x)
  np.testing.assert_allclose(elbo.parts["kl"], numpy_kl(mean, log_var), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(elbo.score, elbo.parts["reconstruction"] + 0.5 * elbo.parts["kl"], rtol=1e-6)
  np.testing.assert_array_equal(elbo.extras["z"], mean)  # scored at the posterior mean
  reconstruction = vae.make_scorer(config, networks).score(x)
  np.testing.assert_array_equal(reconstruction.score, elbo.parts["reconstruction"])
  np.testing.assert_allclose(reconstruction.reconstruction, networks["decoder"](mean, training=False).numpy(),
                             rtol=1e-5, atol=1e-6)


# --- 4. scoring

@pytest.mark.slow
@pytest.mark.parametrize("name,options", [("ae", {}), ("vae", {"vae_score": "reconstruction"}),
                                          ("vae", {"vae_score": "elbo"})])
def test_off_manifold_images_score_above_normal_ones(name, options, trained):
  config, networks, _ = trained[name]
  scorer = FAMILIES[name].make_scorer(config, networks, **options)
  normal = synthetic_images(16, seed=7)  # blobs not trained on
  noise = np.random.default_rng(7).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
  inverted = -normal[:8]
  normal_scores = scorer.score(normal).score
  for off in (noise, inverted):
    assert scorer.score(off).score.min() > normal_scores.max()


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_l1_and_l2_score_the_same_reconstruction_by_abs_and_squared_sums(name, trained):
  config, networks, _ = trained[name]
  x = np.concatenate([synthetic_images(6, seed=8), -synthetic_images(2, seed=9)])
  l1, l2 = (FAMILIES[name].make_scorer(config, networks, recon_loss=k).score(x) for k in ("l1", "l2"))
  np.testing.assert_array_equal(l1.reconstruction, l2.reconstruction)
  residual = np.abs(x - l1.reconstruction).reshape(len(x), -1)
  np.testing.assert_allclose(l1.score, residual.sum(axis=1), rtol=1e-5)
  np.testing.assert_allclose(l2.score, (residual ** 2).sum(axis=1), rtol=1e-5)
  # Residuals are at most 2 (images in [-1, 1]): squaring shrinks those below 1 and grows the
  # rest, so the inverted images (large residuals) gain on the normal ones under l2.
  assert (l2.score[6:] / l1.score[6:]).min() > (l2.score[:6] / l1.score[:6]).max()


BAD_INPUTS = {
    "shape": (np.zeros((2, 32, 32, 1), np.float32), "shape"),
    "channels": (np.zeros((2, 28, 28, 3), np.float32), "shape"),
    "dtype": (np.zeros((2, 28, 28, 1), np.uint8), "dtype"),
    "nan": (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN"),
    "range": (np.full((2, 28, 28, 1), 255.0, np.float32), "outside [-1, 1]"),
    "empty": (np.zeros((0, 28, 28, 1), np.float32), "no images"),
}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_input_is_a_one_line_error(name, bad):
  config = tiny_config(name)
  scorer = FAMILIES[name].make_scorer(config, FAMILIES[name].build_networks(config))
  images, words = BAD_INPUTS[bad]
  with pytest.raises(AnoganError, match=words.replace("[", r"\[").replace("]", r"\]")) as error:
    scorer.score(images)
  assert "\n" not in str(error.value)
  assert scorer.trace_count == 0  # refused before anything ran
  assert scorer.score(synthetic_images(2)[..., 0]).score.shape == (2,)  # (N, h, w) is fine for one channel


def test_vae_scorer_refuses_an_autoencoders_encoder():
  networks = ae.build_networks(tiny_config("ae"))
  with pytest.raises(AnoganError, match="2 heads"):
    vae.make_scorer(tiny_config("vae"), networks)


# --- 5. history.csv through the shared driver

@pytest.mark.slow
def test_the_ae_logs_its_one_loss_once_and_resumes_a_history_that_repeated_it(tmp_path):
  """The AE's history.csv: epoch, loss, seconds (the VAE's `reconstruction` column is a part of
  its loss beside kl; the AE's would repeat `loss`). A workdir from when the AE repeated it as
  `reconstruction` resumes: its rows keep their losses, the extra column goes."""
  import csv

  from anogan_tf import train_lib
  from anogan_tf.data import OneClassData
  x = synthetic_images(64)
  data = OneClassData(x_train=x, x_test=x[:8], y_test=np.arange(8) % 2, classes_test=np.zeros(8, int),
                      test_indices=np.arange(8))
  config = tiny_config("ae", epochs=1)
  workdir = tmp_path / "run"
  train_lib.train(config, str(workdir), data=data, progress=False)
  path = workdir / "history.csv"
  header, first = list(csv.reader(path.open()))
  assert header == ["epoch", "loss", "seconds"]
  path.write_text(f"epoch,loss,reconstruction,seconds\n{first[0]},{first[1]},{first[1]},{first[2]}\n")  # the old layout
  history = train_lib.train(config.replace(epochs=2), str(workdir), data=data, progress=False)
  assert [sorted(row) for row in history] == [["epoch", "loss", "seconds"]] * 2
  assert history[0]["loss"] == float(first[1])
  rows = list(csv.DictReader(path.open()))
  assert [list(row) for row in rows] == [["epoch", "loss", "seconds"]] * 2 and rows[0]["loss"] == first[1]
