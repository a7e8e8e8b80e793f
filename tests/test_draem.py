"""DRAEM's own parts (anogan_tf/models/draem/): the Perlin masks, the simulated anomalies, where
their sources come from, the image score, and that a tiny DRAEM learns to segment a pasted defect.
The family's shared tests (training, resume, export, scoring) are in test_families.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from anogan_tf import Config, models
from anogan_tf.errors import AnoganError
from anogan_tf.models.draem import networks as draem_networks
from anogan_tf.models.draem import synthesis as synthesis_lib
from anogan_tf.models.draem.synthesis import Synthesis


def perlin_of(s: Synthesis, rows):
  f = s.fields(tf.constant(rows))
  return s.perlin(s.resolution(f["res_y"]), s.resolution(f["res_x"]), (f["angle"] - 0.5) * np.pi,
                  f["mask_angles"]).numpy()


def test_perlin_mask_is_seeded_smooth_within_0_1_with_the_expected_coverage():
  """Same seed, same masks; another seed, others. The noise is within [-1, 1] and smooth (neighbouring
  pixels differ by a small share of its spread: at 64 pixels the finest lattice cell is 8 pixels);
  the thresholded mask is 0 or 1 and covers a few percent of an altered picture (the authors'
  threshold 0.5 on noise of spread about 0.3), never all of it."""
  s = Synthesis(side=64, channels=3, anomaly_fraction=1.0)
  rows = s.noise(np.random.default_rng(0), 64)
  np.testing.assert_array_equal(rows, s.noise(np.random.default_rng(0), 64))
  assert not np.array_equal(rows, s.noise(np.random.default_rng(1), 64))
  noise = perlin_of(s, rows)
  assert noise.min() >= -1.0 and noise.max() <= 1.0
  step = np.abs(np.diff(noise, axis=1)).mean() + np.abs(np.diff(noise, axis=2)).mean()
  assert step < 0.5 * noise.std(), (step, noise.std())  # white noise: about 2.3 times its spread
  f = s.fields(tf.constant(rows))
  mask = s.mask(f).numpy()
  assert mask.shape == (64, 64, 64, 1) and set(np.unique(mask)) <= {0.0, 1.0}
  coverage = mask.mean(axis=(1, 2, 3))
  assert 0.02 < coverage.mean() < 0.15 and coverage.max() < 0.6, coverage
  assert (coverage > 0).mean() > 0.8  # most altered pictures get a defect


def test_simulated_anomaly_changes_pixels_only_inside_its_mask():
  """Outside the mask the picture is left exactly as it was; inside it changes; pictures not
  chosen (1 - anomaly_fraction of them) are unchanged with an empty mask."""
  rng = np.random.default_rng(3)
  x = rng.uniform(-1, 1, (32, 32, 32, 3)).astype(np.float32)
  s = Synthesis(side=32, channels=3, anomaly_fraction=0.5, min_cell=4)
  rows = s.noise(np.random.default_rng(4), 32)
  augmented, mask = (t.numpy() for t in s.simulate(tf.constant(x), tf.constant(rows)))
  outside = np.broadcast_to(mask == 0, x.shape)
  np.testing.assert_array_equal(augmented[outside], x[outside])
  inside = np.broadcast_to(mask == 1, x.shape)
  assert inside.any() and np.abs(augmented[inside] - x[inside]).mean() > 0.05
  left = rows[:, synthesis_lib.SCALARS.index("altered")] >= 0.5
  assert left.any() and not mask[left].any()
  np.testing.assert_array_equal(augmented[left], x[left])
  assert augmented.min() >= -1.0 and augmented.max() <= 1.0


def test_each_picture_is_simulated_from_its_own_row_and_neighbour():
  """The batch is split by what each row paints and put back together: a picture's anomaly and mask
  are those its own row gives alone, in any batch (float32 rounding apart), and an own source that
  is the neighbour is the previous picture of the whole batch (changing that picture changes the
  anomaly of these rows only)."""
  rng = np.random.default_rng(12)
  s = Synthesis(side=32, channels=3, min_cell=4, smooth_fraction=0.3, scar_fraction=0.3, flat_fraction=0.2)
  x = rng.uniform(-1, 1, (24, 32, 32, 3)).astype(np.float32)
  rows = s.noise(rng, 24)
  augmented, mask = (t.numpy() for t in s.simulate(tf.constant(x), tf.constant(rows)))
  other = rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32)
  kinds = set()
  for i in range(24):
    f = {name: v[i] for name, v in s.fields(rows).items()}
    kind = ("left" if f["altered"] >= 0.5 else "smooth" if f["use_smooth"] < 0.3 else "flat" if f["use_flat"] < 0.2
            else "texture" if f["use_texture"] < 0.5 else "neighbour" if f["other_picture"] >= 0.5 else "own")
    kinds.add(kind)
    alone, neighbour_changed = ((t.numpy()[1] for t in s.simulate(tf.constant(np.stack([before, x[i]])),
                                                                  tf.constant(rows[[i - 1, i]])))
                                for before in (x[i - 1], other))
    alone_a, alone_m = alone
    np.testing.assert_array_equal(mask[i], alone_m)
    np.testing.assert_allclose(augmented[i], alone_a, atol=1e-5)
    changed_a, _ = neighbour_changed
    if kind == "neighbour" and mask[i].any():
      assert np.abs(changed_a - alone_a).max() > 0.01, i
    else:
      np.testing.assert_array_equal(changed_a, alone_a)
  assert kinds == {"left", "smooth", "flat", "texture", "own", "neighbour"}  # every part of the split is checked


def test_synthesis_uses_no_external_pictures():
  """The simulated anomalies are a function of the batch and its noise rows alone: the traced
  synthesis reads no file, holds no constant or variable the size of a picture (an embedded texture
  photograph would be one), and the sources are textures or the batch's own pictures."""
  s = Synthesis(side=32, channels=3)
  graph = tf.function(s.simulate).get_concrete_function(
    tf.TensorSpec((None, 32, 32, 3), tf.float32), tf.TensorSpec((None, s.row_size), tf.float32)).graph
  types = {op.type for op in graph.get_operations()}
  assert not types & {"ReadFile", "DecodePng", "DecodeJpeg", "DecodeImage", "ImmutableConst", "VarHandleOp",
                      "ReadVariableOp"}, types
  assert len([op for op in graph.get_operations() if op.type == "Placeholder"]) == 2  # x and the rows only
  for op in graph.get_operations():
    if op.type == "Const":
      assert np.prod(op.outputs[0].shape) < 32 * 32, op.name


def test_smoothed_anomalies_stay_in_place_keep_their_colours_and_skip_flat_regions():
  """--draem_smooth_fraction: the source is the picture itself mean-filtered in place (a textured
  half turns smoother inside the mask, its mean colour kept: not moved, not recoloured); where the
  picture is flat nothing visible changes, so the mask is cleared there; with the fraction 0 the
  rows and the anomalies are the authors' as before (the extra columns are not drawn)."""
  rng = np.random.default_rng(5)
  x = np.zeros((32, 32, 32, 1), np.float32)
  x[:, :, :16] = rng.uniform(-1, 1, (32, 32, 16, 1))  # left half textured (mean 0), right half flat at 0
  s = Synthesis(side=32, channels=1, anomaly_fraction=1.0, min_cell=4, smooth_fraction=1.0, beta_max=0.0)
  assert s.row_size == Synthesis(side=32, channels=1, min_cell=4).row_size + len(synthesis_lib.SMOOTH_SCALARS)
  augmented, mask = (t.numpy() for t in s.simulate(tf.constant(x), tf.constant(s.noise(rng, 32))))
  np.testing.assert_array_equal(augmented[mask == 0], x[mask == 0])
  assert mask[:, :, :12].mean() > 0.02, mask[:, :, :12].mean()  # the textured half gets defects
  assert not mask[:, :, 26:].any()  # the flat half, beyond the widest filter's reach, never
  inside = mask[..., 0] == 1
  assert augmented[inside].std() < 0.8 * x[inside].std()  # smoother than the texture it replaced
  assert abs(augmented[inside].mean() - x[inside].mean()) < 0.1  # its own colours
  rows = Synthesis(side=32, channels=1, min_cell=4).noise(np.random.default_rng(6), 8)
  a0, m0 = Synthesis(side=32, channels=1, min_cell=4).simulate(tf.constant(x[:8]), tf.constant(rows))
  assert m0.numpy().any()


def test_flat_anomalies_paint_one_colour_of_their_row():
  """--draem_flat_fraction: the rows it chooses paint their mask with one colour, their row's
  texture colour a (per channel, not recoloured), blended with the original's opacity beta; with
  the fraction 0 no row has the column and no anomaly is flat."""
  rng = np.random.default_rng(9)
  s = Synthesis(side=32, channels=3, anomaly_fraction=1.0, min_cell=4, flat_fraction=1.0, beta_max=0.8)
  assert s.row_size == Synthesis(side=32, channels=3, min_cell=4).row_size + len(synthesis_lib.FLAT_SCALARS)
  x = rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
  rows = s.noise(rng, 16)
  augmented, mask = (t.numpy() for t in s.simulate(tf.constant(x), tf.constant(rows)))
  f = {name: np.asarray(v) for name, v in s.fields(rows).items()}
  colour = np.stack([f[f"colour_a{j}"] for j in range(3)], axis=-1) * 2 - 1  # (16, 3) in [-1, 1]
  beta = (f["beta"] * 0.8)[:, None, None, None]
  expected = x * (1 - mask) + ((1 - beta) * colour[:, None, None, :] + beta * x) * mask
  assert mask.any()
  np.testing.assert_allclose(augmented, expected, atol=1e-5)
  plain = Synthesis(side=32, channels=3, anomaly_fraction=1.0, min_cell=4, beta_max=0.0)
  a0, m0 = (t.numpy() for t in plain.simulate(tf.constant(x), tf.constant(plain.noise(rng, 16))))
  inside = np.broadcast_to(m0 == 1, x.shape).reshape(16, -1, 3)
  assert max(a0[i].reshape(-1, 3)[inside[i]].std(axis=0).max() for i in range(16) if inside[i].any()) > 0.05


def test_scar_masks_are_thin_straight_strokes():
  """--draem_scar_fraction: the mask is one to three straight strokes (1 to 3 pixels wide at 64 pixels,
  15% to 60% of the side long) instead of a Perlin blob; outside it the picture is as it was; with
  the fraction 0 the rows are the authors' (the stroke columns are not drawn)."""
  rng = np.random.default_rng(7)
  s = Synthesis(side=64, channels=1, anomaly_fraction=1.0, scar_fraction=1.0)
  assert s.row_size == Synthesis(side=64, channels=1).row_size + len(synthesis_lib.SCAR_SCALARS)
  x = rng.uniform(-1, 1, (48, 64, 64, 1)).astype(np.float32)
  rows = s.noise(rng, 48)
  rows[:24, s.row_size - len(synthesis_lib.SCAR_SCALARS) + synthesis_lib.SCAR_SCALARS.index("scar_count")] = 0.0
  augmented, mask = (t.numpy() for t in s.simulate(tf.constant(x), tf.constant(rows)))
  np.testing.assert_array_equal(augmented[mask == 0], x[mask == 0])
  area = mask.sum(axis=(1, 2, 3))
  assert (area > 0).all() and area[:24].max() < 0.06 * 64 * 64, area  # one stroke: at most 38 x 3 pixels
  assert area[:24].mean() < area[24:].mean()  # up to three strokes
  single = tf.constant(mask[:24])
  block = -tf.nn.max_pool2d(-single, 4, 1, "VALID").numpy()  # 1 where a 4 x 4 block lies inside the mask
  assert not block.any()  # thin: no stroke is 4 pixels wide
  for m in mask[:24, ..., 0]:
    ys, xs = np.nonzero(m)
    assert np.hypot(ys.max() - ys.min(), xs.max() - xs.min()) >= 0.15 * 64 - 2  # long: a stroke, not a dot


def test_rotated_pictures_turn_about_the_centre_and_reflect_into_the_corners():
  """--draem_rotate_fraction: the rows it chooses turn their picture by their angle in [-90, 90)
  degrees about the centre, counter-clockwise for a positive angle (at +-90 degrees tf.image.rot90's,
  up to the float32 rounding of cos(pi / 2) in the sampling coordinates), with no black corners (a
  flat picture stays flat at 45 degrees); the others are left bit for bit, and at 0 no row has the
  columns (the noise rows of runs without it are as they were)."""
  s = Synthesis(side=16, channels=3, rotate_fraction=0.3)
  assert s.row_size == Synthesis(side=16, channels=3).row_size + len(synthesis_lib.ROTATE_SCALARS)
  rng = np.random.default_rng(5)
  x = rng.uniform(-1, 1, (5, 16, 16, 3)).astype(np.float32)
  x[4] = 0.25
  rows = s.noise(rng, 5)
  use, angle = s.row_size - 2, s.row_size - 1
  rows[:, use] = [0.1, 0.5, 0.29, 0.0, 0.2]  # rows 0, 2, 3 and 4 turn
  rows[:, angle] = [1.0, 1.0, 0.0, 0.5, 0.75]  # +90, (not turned), -90, 0, +45 degrees
  y = s.rotated(tf.constant(x), tf.constant(rows)).numpy()
  np.testing.assert_allclose(y[0], tf.image.rot90(x[0], 1).numpy(), atol=1e-4)
  np.testing.assert_array_equal(y[1], x[1])
  np.testing.assert_allclose(y[2], tf.image.rot90(x[2], 3).numpy(), atol=1e-4)
  np.testing.assert_allclose(y[3], x[3], atol=1e-6)
  np.testing.assert_allclose(y[4], x[4], atol=1e-6)
  assert Synthesis(side=16, channels=3).rotated(x, rows[:, :use]) is x


def test_dihedral_pictures_are_exact_quarter_turns_and_mirrors():
  """--draem_dihedral_fraction: the rows it chooses are turned by their k quarter turns
  (tf.image.rot90's) and, for the elements 4 to 7, mirrored left-right, bit for bit; the others are
  left as they are, and at 0 no row has the columns (the noise rows of runs without it are as they
  were)."""
  s = Synthesis(side=8, channels=2, dihedral_fraction=0.5)
  assert s.row_size == Synthesis(side=8, channels=2).row_size + len(synthesis_lib.DIHEDRAL_SCALARS)
  rng = np.random.default_rng(3)
  x = rng.uniform(-1, 1, (9, 8, 8, 2)).astype(np.float32)
  rows = s.noise(rng, 9)
  use, which = s.row_size - 2, s.row_size - 1
  rows[:, use] = [0.0] * 8 + [0.5]  # the last row is not chosen
  rows[:, which] = (np.arange(9) + 0.5) / 8.0  # elements 0 to 7, then (not chosen) 8 -> 7
  y = s.rotated(tf.constant(x), tf.constant(rows)).numpy()
  for e in range(8):
    want = np.rot90(x[e], e % 4, axes=(0, 1))
    np.testing.assert_array_equal(y[e], want[:, ::-1] if e >= 4 else want)
  np.testing.assert_array_equal(y[8], x[8])
  assert len({y[e].tobytes() for e in range(8)}) == 8  # eight different pictures
  assert Synthesis(side=8, channels=2).rotated(x, rows[:, :use]) is x


def test_image_score_is_the_max_of_the_smoothed_map():
  """The image score is the max of the anomaly map averaged over the window (5 x 5 at 64 pixels:
  21 at 256 scaled), not the max of the raw map; the map is the probability on every channel."""
  config = Config(model="draem", dataset="cifar10", image_size=64, draem_width=4, map_batch_size=8)
  assert models.family("draem").score_window(config) == 5
  networks = models.family("draem").build_networks(config)
  scorer = models.family("draem").make_scorer(config, networks)
  x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  result = scorer.score(x)
  probability = result.residual_map[..., 0]
  np.testing.assert_array_equal(result.residual_map, np.repeat(probability[..., None], 3, axis=-1))
  padded = np.pad(probability, ((0, 0), (2, 2), (2, 2)), constant_values=np.nan)
  windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5), axis=(1, 2))
  smoothed = np.nanmean(windows, axis=(-2, -1))  # TF's SAME average pooling: over the pixels inside
  np.testing.assert_allclose(result.score, smoothed.max(axis=(1, 2)), rtol=1e-5)
  np.testing.assert_allclose(result.parts["segmentation"], result.score)
  assert (probability.max(axis=(1, 2)) > result.score + 1e-4).all()  # the raw map's max would differ
  assert scorer.settings()["draem_score_window"] == 5


def scoring_case(window: int, seed: int):
  """(config, the family, untrained networks, 3 random colour pictures) at 32 pixels, score window `window`."""
  config = Config(model="draem", dataset="folder", data_dir="unused", image_size=32, channels=3, draem_width=2,
                  map_batch_size=8, draem_score_window=window)
  family = models.family("draem")
  x = np.random.default_rng(seed).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
  return config, family, family.build_networks(config), x


def test_shifted_views_average_the_maps_moved_back():
  """--draem_score_shifts=s: the map is the mean of the maps of the picture and of four copies moved
  diagonally by s pixels (reflected at the borders), each moved back; the score is the windowed max
  of that mean, the reconstruction the picture's own repainting; 0 is the picture alone."""
  config, family, networks, x = scoring_case(window=3, seed=2)
  plain = family.make_scorer(config, networks).score(x)
  shifted_scorer = family.make_scorer(config.replace(draem_score_shifts=2), networks)
  shifted = shifted_scorer.score(x)
  maps = []
  for dy, dx in ((0, 0), (2, 2), (-2, -2), (2, -2), (-2, 2)):
    view = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")[:, 2 + dy:34 + dy, 2 + dx:34 + dx]
    m = family.anomaly_probability(networks, tf.constant(view))[1].numpy()[..., 0]
    maps.append(np.pad(m, ((0, 0), (2, 2), (2, 2)), mode="symmetric")[:, 2 - dy:34 - dy, 2 - dx:34 - dx])
  mean = np.mean(maps, axis=0)
  np.testing.assert_allclose(shifted.residual_map[..., 0], mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(plain.residual_map[..., 0], maps[0], rtol=1e-5, atol=1e-6)
  assert np.abs(mean - maps[0]).max() > 1e-3  # the views differ
  windows = np.lib.stride_tricks.sliding_window_view(np.pad(mean, ((0, 0), (1, 1), (1, 1)), constant_values=np.nan),
                                                     (3, 3), axis=(1, 2))
  np.testing.assert_allclose(shifted.score, np.nanmean(windows, axis=(-2, -1)).max(axis=(1, 2)), rtol=1e-5)
  np.testing.assert_allclose(shifted.reconstruction, plain.reconstruction, rtol=1e-5, atol=1e-6)
  assert shifted_scorer.settings()["draem_score_shifts"] == 2


def test_top_share_scores_the_mean_of_the_maps_highest_pixels():
  """--draem_score_top=q: the image score is the mean of the ceil(q * pixels) highest values of the
  (window-averaged) map, not its max; the map itself is unchanged, and 1 is the whole map's mean."""
  config, family, networks, x = scoring_case(window=1, seed=3)
  plain = family.make_scorer(config, networks).score(x)
  probability = plain.residual_map[..., 0].reshape(3, -1)
  assert plain.score == pytest.approx(probability.max(axis=1), rel=1e-6)
  ranked = -np.sort(-probability, axis=1)
  for q, k in ((0.01, 11), (0.02, 21), (1.0, 1024)):  # 1% of 1,024 pixels is 10.24: 11 of them
    scorer = family.make_scorer(config.replace(draem_score_top=q), networks)
    top = scorer.score(x)
    np.testing.assert_allclose(top.residual_map, plain.residual_map, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(top.score, ranked[:, :k].mean(axis=1), rtol=1e-5)
    if k < 1024:  # one pixel more or fewer would differ
      assert (np.abs(top.score - ranked[:, :k + 1].mean(axis=1)) > 1e-6).all()
      assert (np.abs(top.score - ranked[:, :k - 1].mean(axis=1)) > 1e-6).all()
    assert scorer.settings()["draem_score_top"] == q
  assert "draem_score_top" not in family.make_scorer(config, networks).settings()  # older thresholds still apply


@pytest.mark.parametrize("side, pools", [(28, (1, 1)), (32, (1, 2)), (64, (2, 3)), (128, (3, 4)), (256, (4, 5))])
def test_depth_follows_the_image_size(side, pools):
  """The authors' poolings at 256 pixels (to 16x16 and to 8x8), one fewer per halving, at least one."""
  config = Config(model="draem", draem_width=2) if side == 28 else \
      Config(model="draem", dataset="folder", data_dir="unused", image_size=side, channels=3, draem_width=2)
  networks = models.family("draem").build_networks(config)
  assert (networks["reconstructive"].pools, networks["discriminative"].pools) == pools
  assert networks["reconstructive"](tf.zeros((1,) + config.image_shape)).shape == (1,) + config.image_shape


def test_batchnorm_keeps_the_unbiased_running_variance_as_the_authors_pytorch():
  """Every BN of both networks averages the batch variance with Bessel's correction into its
  running variance, as PyTorch's BatchNorm2d (the authors' networks) does, and normalises by the
  biased one; momentum --bn_momentum (0.9 = PyTorch's 0.1)."""
  config = Config(model="draem", dataset="folder", data_dir="unused", image_size=32, channels=3, draem_width=2,
                  bn_momentum=0.9)
  networks = models.family("draem").build_networks(config)
  blocks = [block for network in networks.values() for block in network.down + network.up + network.merge]
  bns = [layer for block in blocks for layer in block.layers if "_bn" in layer.name]
  # per network of p poolings: p + 1 encoder blocks and p merge blocks of two BN, p upsampling blocks of one
  assert len(bns) == sum(5 * network.pools + 2 for network in networks.values()) == 19  # 1 and 2 poolings at 32 pixels
  x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, (4, 6, 5, 4)).astype(np.float32))  # 4 channels: 2c
  for block in (draem_networks._block(8, 0.9, "down"), draem_networks._up(8, 0.9, "up")):  # as the networks' blocks
    h = draem_networks.run_block(keras.Sequential(block.layers[:-2]), x, training=True).numpy()  # the BN's input
    y = draem_networks.run_block(block, x, training=True).numpy()
    bn = block.layers[-2]
    n = h.shape[0] * h.shape[1] * h.shape[2]
    mean, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-4)
    np.testing.assert_allclose(y, np.maximum(0, (h - mean) / np.sqrt(var + bn.epsilon)), rtol=1e-3, atol=1e-4)


def test_bad_draem_settings_are_one_line_errors():
  for changes in (dict(draem_width=0), dict(draem_anomaly_fraction=1.5), dict(draem_perlin_min_cell=6),
                  dict(draem_score_window=4), dict(draem_beta_max=1.0),
                  dict(draem_smooth_fraction=-0.1), dict(draem_scar_fraction=1.5), dict(draem_rotate_fraction=-0.3), dict(draem_flat_fraction=2.0),
                  dict(draem_dihedral_fraction=1.5),
                  dict(draem_score_shifts=-1), dict(draem_score_top=1.5), dict(draem_score_top=-0.01)):
    with pytest.raises(AnoganError, match="--draem_"):
      Config(model="draem", **changes)


def textures(n, rng, side=32):
  """Grey gratings with random phase and a little noise: a regular texture, in [-1, 1]."""
  yy, xx = np.mgrid[0:side, 0:side]
  phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
  x = 0.5 * np.sin(2 * np.pi * xx / 8 + phase) + 0.1 * rng.standard_normal((n, side, side))
  return np.clip(x, -1, 1)[..., None].astype(np.float32)


@pytest.mark.slow
def test_tiny_draem_segments_a_pasted_defect_better_than_chance(tmp_path):
  """A tiny DRAEM trained 40 steps on a grating texture (only its own simulated anomalies) finds a
  pasted bright disc: its anomaly map ranks the disc's pixels above the rest (pixel AUROC) and its
  score ranks the defective pictures above good ones. Neither passes when the discriminative
  network is left untrained, learns the mask of another picture of the batch, or sees the
  repainting without the picture."""
  from sklearn.metrics import roc_auc_score

  from anogan_tf import train_lib
  from anogan_tf.data import OneClassData
  from anogan_tf.engine import workdir as workdir_lib

  rng = np.random.default_rng(0)
  x_train = textures(128, rng)
  good, defective = textures(16, rng), textures(16, rng)
  yy, xx = np.mgrid[0:32, 0:32]
  masks = np.zeros((32, 32, 32), bool)
  for i in range(16):
    cy, cx = rng.uniform(8, 24, 2)
    masks[16 + i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= 4 ** 2
    defective[i][masks[16 + i]] = 0.9
  x_test = np.concatenate([good, defective])
  y = np.r_[np.zeros(16, int), np.ones(16, int)]
  config = Config(model="draem", dataset="mnist", image_size=32, draem_width=8, batch_size=16,
                  epochs=5, lr=2e-3, lr_decay_epoch=0, bn_momentum=0.9, seed=0, map_batch_size=32,
                  draem_perlin_min_cell=4)
  data = OneClassData(x_train=x_train, x_test=x_test[:2], y_test=np.array([0, 1]), classes_test=np.zeros(2, int),
                      test_indices=np.arange(2))
  train_lib.train(config, str(tmp_path / "run"), data=data, progress=False)  # 40 steps
  family = models.family("draem")
  result = family.make_scorer(config, workdir_lib.load_networks(str(tmp_path / "run"), family)).score(x_test)
  pixel_auroc = roc_auc_score(masks[16:].ravel(), result.residual_map[16:, ..., 0].ravel())
  image_auroc = roc_auc_score(y, result.score)
  assert pixel_auroc > 0.8 and image_auroc > 0.8, (pixel_auroc, image_auroc)
