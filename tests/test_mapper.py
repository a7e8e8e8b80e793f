import re

import keras
import numpy as np
import pytest

from anogan_tf import AnoganError, Discriminator, Generator, LatentMapper
from anogan_tf.nn import losses


@pytest.fixture(scope="module")
def networks():
  keras.utils.set_random_seed(1)
  return Generator(), Discriminator()


def on_manifold(g, n, seed=5):
  z_star = np.random.default_rng(seed).uniform(-1, 1, (n, 50)).astype(np.float32)
  return z_star, g(z_star).numpy()


@pytest.mark.slow
def test_mapping_drives_the_score_of_g_of_z_star_to_zero(networks):
  g, d = networks
  _, x = on_manifold(g, 4)
  result = LatentMapper(g, d, seed=0).map(x)
  assert result.trajectory.shape == (4, 150)
  assert np.all(result.score < 1e-3)
  assert np.all(result.score < 0.02 * result.trajectory[:, 0])  # fell by > 50x from the start
  np.testing.assert_allclose(result.generated, g(result.z).numpy(), atol=1e-5)
  np.testing.assert_allclose(result.residual_map, np.abs(x - result.generated), atol=1e-6)
  np.testing.assert_allclose(result.score, 0.3 * result.residual + 0.7 * result.discrimination, rtol=1e-5)


def test_off_manifold_images_score_above_on_manifold_ones(networks):
  g, d = networks
  _, on = on_manifold(g, 4)
  off = np.random.default_rng(3).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
  scores = LatentMapper(g, d, seed=0).map(np.concatenate([on, off])).score
  assert scores[4:].min() > 10 * scores[:4].max()


@pytest.mark.slow
def test_batched_equals_one_by_one(networks):
  g, d = networks
  rng = np.random.default_rng(7)
  _, on = on_manifold(g, 3)
  x = np.concatenate([on, rng.uniform(-1, 1, (5, 28, 28, 1)).astype(np.float32)])
  batched = LatentMapper(g, d, seed=11).map(x)
  single_mapper = LatentMapper(g, d, seed=11, batch_size=1)
  singles = [single_mapper.map(x[i:i + 1]) for i in range(len(x))]
  scores = np.array([s.score[0] for s in singles])
  # Same z0 per image (drawn row by row from one seeded stream) and the same trajectory.
  # atol: G(z*) rows end near 1e-5, where the L1 search is float32 noise; real scores are > 1e-2.
  # rtol: the kernels round differently at each batch size, and on noise images, where the L1 loss
  # is flat, 150 Adam steps carry that up to 2.2e-4 (seen in CI); mixing images moves scores by far more.
  np.testing.assert_allclose(scores, batched.score, rtol=1e-3, atol=1e-5)
  trajectories = np.concatenate([s.trajectory for s in singles])
  np.testing.assert_allclose(trajectories[3:], batched.trajectory[3:], rtol=1e-3)
  # z itself is not compared: the kernels round differently at different batch sizes (oneDNN picks
  # them by shape), and on a flat stretch of the L1 loss that moves z (by 0.27 on one noise image
  # here) while the loss agrees to 1.5e-4. What the user sees, G(z*), moves with it on that image:
  # by 0.0059 on average and 0.034 at most over its pixels (of [-1, 1]); the others agree to 4e-4.
  generated = np.concatenate([s.generated for s in singles])
  difference = np.abs(generated - batched.generated)
  assert difference.mean(axis=(1, 2, 3)).max() < 0.01
  assert difference.max() < 0.1
  chunked = LatentMapper(g, d, seed=11, batch_size=3).map(x)  # padded last chunk
  np.testing.assert_allclose(chunked.score, batched.score, rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(chunked.trajectory[3:], batched.trajectory[3:], rtol=1e-3)


def test_no_retrace_across_batches_and_calls(networks):
  g, d = networks
  mapper = LatentMapper(g, d, seed=0, steps=(3, 2), learning_rates=(0.1, 0.01), batch_size=4)
  x = np.random.default_rng(0).uniform(-1, 1, (10, 28, 28, 1)).astype(np.float32)
  mapper.map(x)  # 3 chunks of 4, the last one padded
  mapper.map(x[:9])
  mapper.map(x)
  assert mapper.trace_count == 1


def test_reset_between_calls_restores_the_optimizers(networks):
  g, d = networks
  x = np.random.default_rng(4).uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
  z0 = np.random.default_rng(9).uniform(-1, 1, (2, 50)).astype(np.float32)
  mapper = LatentMapper(g, d, steps=(5, 5), learning_rates=(0.1, 0.01))
  first, second = mapper.map(x, initial_z=z0), mapper.map(x, initial_z=z0)
  np.testing.assert_array_equal(first.score, second.score)
  np.testing.assert_array_equal(first.trajectory, second.trajectory)
  state = mapper._states[2]
  assert [float(opt.learning_rate.numpy()) for opt in state.optimizers] == pytest.approx([0.1, 0.01])
  assert [int(opt.iterations.numpy()) for opt in state.optimizers] == [5, 5]


def test_adam_matches_tf1_adam_by_hand(networks):
  """One mapping step equals TF1's Adam update with epsilon 1e-8 written out by hand."""
  import tensorflow as tf

  from anogan_tf.nn import losses
  g, d = networks
  x = np.random.default_rng(8).uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
  z0 = np.random.default_rng(9).uniform(-1, 1, (2, 50)).astype(np.float32)
  z = tf.Variable(z0)
  with tf.GradientTape() as tape:
    gz = g(z, training=False)
    loss = losses.anomaly_score(losses.residual_loss(x, gz),
                                losses.discrimination_loss(d.features(x), d.features(gz)), 0.7)
    total = tf.reduce_sum(loss)
  grad = tape.gradient(total, z).numpy()
  lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
  m, v = (1 - b1) * grad, (1 - b2) * grad ** 2
  expected = z0 - lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
  result = LatentMapper(g, d, steps=(1,), learning_rates=(lr,)).map(x, initial_z=z0)
  np.testing.assert_allclose(result.z, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 32, 32, 1), np.float32), "shape"),
    (np.zeros((2, 28, 28, 3), np.float32), "shape"),
    (np.zeros((2, 28, 28, 1), np.uint8), "dtype"),
    (np.full((2, 28, 28, 1), 200.0, np.float32), "outside [-1, 1]"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN"),
    (np.zeros((0, 28, 28, 1), np.float32), "no images"),
])
def test_bad_images_are_clear_errors(networks, bad, message):
  g, d = networks
  with pytest.raises(AnoganError, match=message.replace("[", r"\[").replace("]", r"\]")):
    LatentMapper(g, d).map(bad)


def test_automatic_batch_size_follows_the_available_memory(networks):
  from anogan_tf.models.anogan.mapper import activation_floats_per_image, auto_batch_size
  g, d = networks
  floats = activation_floats_per_image(g, d)
  assert floats == 36_064 + 6_272  # every layer output of G (reshape included), D's conv1 and act1
  per_image = 8 * floats
  assert auto_batch_size(g, d, available_bytes=4 * 100 * per_image) == 64  # 100 fit: largest power of 2
  assert auto_batch_size(g, d, available_bytes=10 * per_image) == 2
  assert auto_batch_size(g, d, available_bytes=1) == 1
  assert auto_batch_size(g, d, available_bytes=1 << 40) == 1024
  assert LatentMapper(g, d).batch_size in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
  with pytest.raises(AnoganError, match="batch_size=-3"):
    LatentMapper(g, d, batch_size=-3)


def _noise(n, seed=12):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32)


def test_sum_reduction_is_the_mean_times_the_count_per_image(networks):
  g, d = networks
  x = _noise(3)
  result = LatentMapper(g, d, steps=(4,), learning_rates=(0.1,), reduction="sum", seed=1).map(x)
  # At the final z: L_R sums |x - G(z)| over the 784 pixels, L_D |f(x) - f(G(z))| over act1's 3,136.
  fx, fg = d.features(x), d.features(result.generated)
  assert fx.shape == fg.shape == (3, 14 * 14 * 16)
  np.testing.assert_allclose(result.residual, 784 * losses.residual_loss(x, result.generated).numpy(), rtol=1e-5)
  np.testing.assert_allclose(result.discrimination, 3136 * losses.discrimination_loss(fx, fg).numpy(), rtol=1e-4)
  np.testing.assert_allclose(result.score, 0.3 * result.residual + 0.7 * result.discrimination, rtol=1e-5)
  assert result.score.min() > 100  # sums, not means: far above any per-pixel mean


def test_normal_initial_z_has_the_given_std_and_is_where_mapping_starts(networks):
  g, d = networks
  normal = dict(z_init="normal", z_init_std=0.1, seed=3)
  z0 = LatentMapper(g, d, **normal).initial_z(400)
  assert z0.shape == (400, 50) and z0.dtype == np.float32
  assert abs(z0.std() - 0.1) < 0.003 and abs(z0.mean()) < 0.003
  uniform = LatentMapper(g, d, seed=3).initial_z(400)  # seed 000: U(-1, 1), std 1/sqrt(3)
  assert uniform.min() >= -1 and uniform.max() <= 1 and abs(uniform.std() - 3 ** -0.5) < 0.01
  x = _noise(2)
  stages = dict(steps=(2,), learning_rates=(0.1,))
  drawn = LatentMapper(g, d, **normal, **stages).map(x)
  given = LatentMapper(g, d, **stages).map(x, initial_z=LatentMapper(g, d, **normal).initial_z(2))
  np.testing.assert_array_equal(drawn.trajectory, given.trajectory)
  np.testing.assert_array_equal(drawn.score, given.score)


@pytest.mark.parametrize("shape", [(3, 50), (2, 49), (2,), (2, 50, 1)])
def test_wrong_shape_initial_z_is_a_clear_error(networks, shape):
  g, d = networks
  with pytest.raises(AnoganError, match=re.escape(f"initial_z has shape {shape}; expected (2, 50)")):
    LatentMapper(g, d, steps=(1,), learning_rates=(0.1,)).map(_noise(2), initial_z=np.zeros(shape, np.float32))


def test_images_without_a_channel_axis_score_as_one_channel(networks):
  g, d = networks
  x = _noise(3)
  mapper = LatentMapper(g, d, steps=(3, 2), learning_rates=(0.1, 0.01))
  z0 = mapper.initial_z(3)
  with_channel, without = mapper.map(x, initial_z=z0), mapper.map(x[..., 0], initial_z=z0)
  assert without.generated.shape == without.residual_map.shape == (3, 28, 28, 1)
  np.testing.assert_array_equal(without.score, with_channel.score)
  np.testing.assert_array_equal(without.trajectory, with_channel.trajectory)


@pytest.mark.parametrize("settings, message", [
    (dict(reduction="summ"), "unknown reduction 'summ'; use mean or sum"),
    (dict(reduction="Sum"), "unknown reduction 'Sum'; use mean or sum"),
    (dict(z_init="gaussian"), "unknown z_init 'gaussian'; use uniform or normal"),
    (dict(feature_layer="logits"), "unknown --feature_layer 'logits'; use one of conv1, act1, conv2, act2, flatten"),
    (dict(steps=(5, 0)), "steps=[5, 0]; every stage needs at least one iteration"),
])
def test_unknown_mapping_settings_are_clear_errors(networks, settings, message):
  g, d = networks
  with pytest.raises(AnoganError, match=re.escape(message)):
    LatentMapper(g, d, **settings)


def test_the_losses_reject_an_unknown_reduction():
  x = np.zeros((2, 4, 4, 1), np.float32)
  with pytest.raises(AnoganError, match=re.escape("unknown reduction 'summ'; use mean or sum")):
    losses.residual_loss(x, x, "summ")
  with pytest.raises(AnoganError, match=re.escape("unknown reduction 'max'; use mean or sum")):
    losses.discrimination_loss(x, x, "max")


def test_feature_layer_is_a_setting_of_the_mapper_not_of_the_discriminator(networks):
  from anogan_tf.models.anogan.mapper import activation_floats_per_image
  g, d = networks
  x = _noise(2)
  stages = dict(steps=(3,), learning_rates=(0.1,))
  default, flatten = LatentMapper(g, d, **stages), LatentMapper(g, d, feature_layer="flatten", **stages)
  assert default.feature_layer == "act1" and flatten.feature_layer == "flatten"
  z0 = default.initial_z(2)
  a, b = default.map(x, initial_z=z0), flatten.map(x, initial_z=z0)
  want = losses.discrimination_loss(d.features(x, layer="flatten"), d.features(b.generated, layer="flatten"))
  np.testing.assert_allclose(b.discrimination, want.numpy(), rtol=1e-5)
  assert np.abs(a.discrimination - b.discrimination).min() > 1e-3
  assert "feature_layer" not in d.get_config()  # a setting of the mapping, not saved with D
  # the automatic batch size counts D's activations up to the mapper's layer
  assert activation_floats_per_image(g, d, "flatten") == activation_floats_per_image(g, d) + 3 * 1568  # conv2, act2, flatten


@pytest.mark.slow
def test_restarts_keep_each_images_best_search(networks):
  from anogan_tf import Config
  from anogan_tf.models import anogan
  g, d = networks
  rng = np.random.default_rng(2)
  x = rng.uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
  config = Config(map_steps=(3, 4), seed=5, map_restarts=3)
  nets = {"generator": g, "discriminator": d}
  scorer = anogan.make_scorer(config, nets)
  result = scorer.score(x)
  # The same searches, one mapper per restart, built by hand.
  alone = [LatentMapper(g, d, steps=(3, 4), seed=5 + anogan.RESTART_SEED_STRIDE * k).score(x) for k in range(3)]
  scores = np.stack([r.score for r in alone])
  assert len({tuple(s) for s in np.round(scores, 6)}) == 3  # the restarts start apart
  best = scores.argmin(axis=0)
  np.testing.assert_allclose(result.score, scores.min(axis=0), rtol=1e-5)
  rows = np.arange(len(x))
  np.testing.assert_allclose(result.reconstruction, np.stack([r.reconstruction for r in alone])[best, rows], atol=1e-5)
  np.testing.assert_allclose(result.extras["z"], np.stack([r.extras["z"] for r in alone])[best, rows], atol=1e-5)
  for part in result.parts:
    np.testing.assert_allclose(result.parts[part], np.stack([r.parts[part] for r in alone])[best, rows], rtol=1e-5)
  assert scorer.settings()["map_restarts"] == 3
  # One restart is the plain mapper, as before.
  single = anogan.make_scorer(config.replace(map_restarts=1), nets)
  assert isinstance(single, LatentMapper)
  np.testing.assert_allclose(single.score(x).score, alone[0].score, rtol=1e-5)


def test_restarts_are_refused_where_they_cannot_differ():
  from anogan_tf import Config
  with pytest.raises(AnoganError, match="use --map_restarts=1 with --initial_z=encoder"):
    Config(initial_z="encoder", map_restarts=2)
  with pytest.raises(AnoganError, match="--map_restarts=0 is below 1"):
    Config(map_restarts=0)
