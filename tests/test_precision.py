"""--precision=bfloat16: every family trains and scores in it through the shared interface, with
float32 variables, scores close to float32's, no dtype policy left behind, resume refused in
another precision, thresholds not applied across precisions, an export that serves; the CPU's
bf16 support; the fused BatchNorm and the sub-pixel gradient on bfloat16 inputs.

Tolerances: bfloat16 keeps 8 significant bits, so each layer rounds its inputs and weights to a
relative 2^-8 (0.4%); a score goes through about eight such layers (and AnoGAN's search through
its steps), whose roundings add up and partly cancel in the mean over pixels. Scores within
16 * 2^-8 (6%) of float32's are bfloat16 rounding; a wrong statistic, a missing cast or a lost
weight moves them by far more."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import synthetic_images
from test_families import blobs_data, run_config

from anogan_tf import AnoganError, Config, Discriminator, Generator, evaluate_lib, export_lib, models, train_lib
from anogan_tf.data import OneClassData
from anogan_tf.engine import driver
from anogan_tf.engine import workdir as workdir_lib
from anogan_tf.evaluation import threshold as threshold_lib
from anogan_tf.nn import layers, precision
from anogan_tf.utils import cpu

FAMILIES = models.names()
BF16_RTOL = 16 * 2.0**-8


def policy_name():
  return keras.config.dtype_policy().name


def with_validation(data):
  """OneClassData `data` with held-out normals (for a threshold)."""
  return OneClassData(x_train=data.x_train, x_test=data.x_test, y_test=data.y_test, classes_test=data.classes_test,
                      test_indices=data.test_indices, x_val=synthetic_images(20, seed=3))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, family_runs):
  """{family: (config, float32 workdir, bfloat16 workdir, bfloat16 history)}: 2 tiny epochs in
  bfloat16; in float32 conftest.family_runs' (3 epochs, shared with test_families.py). ae's
  bfloat16 run also writes a threshold from held-out normals (with_threshold)."""
  root = tmp_path_factory.mktemp("precision")
  out = {}
  for name in FAMILIES:
    config = run_config(name).replace(epochs=2)
    data = blobs_data(config)
    if name == "ae":
      config, data = config.replace(val_fraction=0.2), with_validation(data)
    f32, bf16 = family_runs[name][1], str(root / name / "bfloat16")
    history = train_lib.train(config.replace(precision="bfloat16"), bf16, data=data, progress=False)
    out[name] = (config, f32, bf16, history)
  return out


def scores(config, workdir, which):
  scorer, networks = workdir_lib.load_scorer(config.replace(precision=which), workdir, models.family(config.model))
  return scorer.score(blobs_data(config).x_test).score, networks


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_trains_in_bfloat16_with_float32_variables(trained, name):
  config, _, bf16, history = trained[name]
  assert policy_name() == "float32"  # training in bfloat16 left no policy behind
  assert len(history) == 2 and all(np.isfinite(v) for row in history for k, v in row.items() if k != "seconds")
  with open(os.path.join(bf16, "flags.txt")) as f:
    assert "--precision=bfloat16\n" in f.read()
  # the .keras files are float32 models: loaded anywhere, float32 layers and weights
  for network in models.family(name).NETWORKS:
    model = keras.models.load_model(os.path.join(bf16, f"{network}.keras"))
    assert model.dtype_policy.name == "float32" and precision.network_precision(model) == "float32"
    assert {w.dtype for w in model.weights} == {"float32"}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("trained_in", ["float32", "bfloat16"])
def test_bfloat16_scores_are_finite_and_close_to_float32(trained, name, trained_in):
  config, f32, bf16, _ = trained[name]
  workdir = f32 if trained_in == "float32" else bf16
  config = config.replace(precision=trained_in)
  reference, networks = scores(config, workdir, "float32")
  low, low_networks = scores(config, workdir, "bfloat16")
  assert {precision.network_precision(n) for n in networks.values()} == {"float32"}
  assert {precision.network_precision(n) for n in low_networks.values()} == {"bfloat16"}
  assert all(w.dtype == "float32" for n in low_networks.values() for w in n.weights)
  assert np.isfinite(low).all()
  assert not np.array_equal(low, reference)  # computed in bfloat16 indeed
  np.testing.assert_allclose(low, reference, rtol=BF16_RTOL)
  assert policy_name() == "float32"


def test_the_policy_is_restored_when_a_build_fails():
  def failing():
    assert policy_name() == "mixed_bfloat16"
    raise ValueError("boom")
  with pytest.raises(ValueError):
    precision.built("bfloat16", failing)
  assert policy_name() == "float32"


def test_a_bfloat16_workdir_resumes_and_refuses_another_precision(trained, tmp_path):
  config, _, bf16, first = trained["ae"]  # 2 epochs in bfloat16
  config = config.replace(precision="bfloat16")
  workdir = str(tmp_path / "ae")
  shutil.copytree(bf16, workdir)
  data = with_validation(blobs_data(config))
  history = train_lib.train(config.replace(epochs=3), workdir, data=data, progress=False)
  assert [row["epoch"] for row in history] == [0, 1, 2]
  assert history[:2] == first  # epochs 0 and 1 are read back from history.csv, timing included: not trained again
  with pytest.raises(AnoganError, match=r"\(--precision=bfloat16, now float32\)") as error:
    train_lib.train(config.replace(epochs=4, precision="float32"), workdir, data=data, progress=False)
  assert "\n" not in str(error.value)


@pytest.fixture
def with_threshold(trained):
  """An ae workdir trained in bfloat16 with a threshold from held-out normals (trained's), and its config."""
  config, _, workdir, _ = trained["ae"]
  assert config.val_fraction > 0
  return config.replace(precision="bfloat16"), workdir


def test_a_threshold_applies_only_in_its_own_precision(with_threshold):
  config, workdir = with_threshold
  assert threshold_lib.read(workdir)["precision"] == "bfloat16"
  for which, applies in (("bfloat16", True), ("float32", False)):
    scorer, networks = workdir_lib.load_scorer(config.replace(precision=which), workdir, models.family("ae"))
    decision = threshold_lib.decide(config.replace(precision=which), workdir, scorer.settings(), networks)
    assert (decision.threshold is not None) == applies, decision.note
  assert "--precision=bfloat16" in decision.note and "\n" not in decision.note
  # a threshold.json written before precision was recorded is float32's
  record = threshold_lib.read(workdir)
  del record["precision"]
  assert threshold_lib.record_precision(record) == "float32"


def test_evaluate_records_the_precision_and_the_cpu(with_threshold, tmp_path):
  config, workdir = with_threshold
  metrics = evaluate_lib.evaluate(config, workdir, data=blobs_data(config), progress=False, out_dir=str(tmp_path / "eval"))
  assert metrics["compute_precision"] == "bfloat16" and metrics["cpu_bf16"] == cpu.bf16_support()
  assert "threshold" in metrics  # its own precision: the threshold decided
  metrics = evaluate_lib.evaluate(config.replace(precision="float32"), workdir, data=blobs_data(config), progress=False,
                                  out_dir=str(tmp_path / "eval32"))
  assert metrics["compute_precision"] == "float32" and "threshold" not in metrics


@pytest.mark.parametrize("name", ["anogan", "egbad"])
def test_a_bfloat16_export_serves(trained, name, tmp_path):
  config, workdir, _, _ = trained[name]
  config = config.replace(precision="bfloat16", map_batch_size=8)
  output = str(tmp_path / "saved")
  meta = export_lib.export(config, workdir, output, threshold=0.5)
  assert meta["precision"] == "bfloat16" and policy_name() == "float32"
  x = blobs_data(config).x_test
  loaded, family = tf.saved_model.load(output), models.family(name)
  fresh = lambda: workdir_lib.load_scorer(config.replace(precision="float32"), workdir, family)[0]  # noqa: E731
  if export_lib.SERVING_FROM_Z in meta["signatures"]:  # a search: from the float32 scorer's own starts
    served = loaded.signatures[export_lib.SERVING_FROM_Z](images=tf.constant(x),
                                                          initial_z=tf.constant(fresh().initial_z(len(x))))
  else:
    served = loaded.signatures["serving_default"](images=tf.constant(x))
  served_scores = served["score"].numpy()
  assert np.isfinite(served_scores).all()
  np.testing.assert_allclose(served_scores, fresh().score(x).score, rtol=BF16_RTOL)


def test_an_export_refuses_a_threshold_of_the_other_precision(with_threshold, tmp_path):
  config, workdir = with_threshold
  with pytest.raises(AnoganError, match="--precision=bfloat16"):
    export_lib.export(config.replace(precision="float32"), workdir, str(tmp_path / "saved"))


# --- the CPU's bf16 support

CPUINFO = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx512f {}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize("flags, support", [("amx_bf16 amx_tile avx512_bf16", "amx"), ("avx512_bf16", "avx512_bf16"),
                                            ("amx_tile", "none"), ("", "none")])
def test_bf16_support_from_cpuinfo(flags, support):
  model, found = cpu.parse_cpuinfo(CPUINFO.format(flags))
  assert model == "Some CPU" and cpu.support_from_flags(found) == support


def test_the_notice_is_printed_once_and_only_without_bf16(monkeypatch, capsys):
  monkeypatch.setattr(precision, "_noticed", [])
  monkeypatch.setattr(cpu, "_read", lambda: ("Old CPU", "none"))
  assert not precision.notice("float32")
  assert precision.notice("bfloat16") and not precision.notice("bfloat16")
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and "Old CPU" in lines[0] and "--precision=float32" in lines[0]
  monkeypatch.setattr(precision, "_noticed", [])
  monkeypatch.setattr(cpu, "_read", lambda: ("New CPU", "amx"))
  assert not precision.notice("bfloat16")


# --- the layers for speed, on bfloat16 inputs

def _op_types(fn, *args):
  return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


def test_fused_batchnorm_runs_the_fused_kernel_on_bfloat16_with_float32_statistics():
  n = 2 * 2 * 2  # values per channel: Bessel's n / (n - 1) = 8 / 7 tells the fused kernel's variance from Keras'
  x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (2, 2, 2, 4)).astype(np.float32))
  with precision.policy("bfloat16"):
    fused, plain = layers.FusedBatchNormalization(momentum=0.0), keras.layers.BatchNormalization(momentum=0.0)
  for layer in (fused, plain):
    layer.build(x.shape)
  assert "FusedBatchNormV3" in _op_types(lambda x: fused(x, training=True), x)
  out_fused, out_plain = fused(x, training=True), plain(x, training=True)
  assert out_fused.dtype == out_plain.dtype == tf.bfloat16
  # normalised values within a few units of 2^-8 of each other (both round to bfloat16)
  np.testing.assert_allclose(tf.cast(out_fused, tf.float32), tf.cast(out_plain, tf.float32), atol=4 * 2.0**-8 * 4)
  assert fused.moving_mean.dtype == fused.moving_variance.dtype == "float32"
  # momentum 0: the moving statistics are this batch's, computed in float32 from bfloat16 inputs
  np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=2.0**-8)
  np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy() * n / (n - 1), rtol=2.0**-7)
  out = fused(x, training=False)
  assert out.dtype == tf.bfloat16 and np.isfinite(tf.cast(out, tf.float32)).all()


def test_the_automatic_mapping_batch_is_smaller_in_bfloat16():
  from anogan_tf.models.anogan.mapper import MAX_BFLOAT16_MAPPING_BATCH, auto_batch_size
  plenty = 1 << 40
  for name, largest in (("float32", 1024), ("bfloat16", MAX_BFLOAT16_MAPPING_BATCH)):
    g, d = precision.built(name, lambda: (Generator(), Discriminator()))
    assert auto_batch_size(g, d, available_bytes=plenty) == largest
    assert auto_batch_size(g, d, available_bytes=1) == 1  # memory still decides below the cap
  assert MAX_BFLOAT16_MAPPING_BATCH < 1024


def test_fused_batchnorm_normalises_bfloat16_inputs_in_the_float32_kernel():
  """oneDNN's bfloat16 FusedBatchNorm and its gradient are several times slower than the float32
  ones here: a bfloat16 input is normalised in float32 and the output cast back to bfloat16."""
  x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 6, 6, 8)).astype(np.float32))
  with precision.policy("bfloat16"):
    fused = layers.FusedBatchNormalization()
  fused.build(x.shape)

  def step(x, training):
    x = tf.cast(x, tf.bfloat16)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fused(x, training=training)
      total = tf.reduce_sum(tf.cast(y, tf.float32))
    return y, tape.gradient(total, x)

  for training in (True, False):
    graph = tf.function(lambda x: step(x, training)).get_concrete_function(x).graph  # noqa: B023
    kernels = [op for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]
    assert {op.type for op in kernels} == {"FusedBatchNormV3", "FusedBatchNormGradV3"}
    assert {op.get_attr("T") for op in kernels} == {tf.float32}
    y, dx = step(x, training)
    assert y.dtype == dx.dtype == tf.bfloat16


def test_the_subpixel_gradient_layer_takes_its_input_gradient_subpixel_on_bfloat16():
  rng = np.random.default_rng(1)
  x = tf.constant(rng.normal(size=(4, 8, 8, 1)).astype(np.float32))
  with precision.policy("bfloat16"):
    ours = layers.SubpixelGradientConv2D(6, 3, strides=2, padding="same")
  theirs = keras.layers.Conv2D(6, 3, strides=2, padding="same", dtype="mixed_bfloat16")
  ours.build(x.shape), theirs.build(x.shape)
  theirs.set_weights(ours.get_weights())

  def input_gradient(layer, x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.reduce_sum(tf.cast(layer(x), tf.float32) ** 2)
    return tape.gradient(y, x)

  assert "DepthToSpace" in _op_types(lambda x: input_gradient(ours, x), x)
  got, want = input_gradient(ours, x), input_gradient(theirs, x)
  scale = float(tf.reduce_max(tf.abs(want)))
  np.testing.assert_allclose(got, want, atol=8 * 2.0**-8 * scale)


def test_a_bfloat16_generator_trains_by_forward_convolutions():
  """In bfloat16 the generator's transposed convolutions run forwards and backwards as forward and
  backprop-filter convolutions (nn.layers.transposed_convolution), no backprop-input one (oneDNN's
  slow bfloat16 kernel); each BatchNorm computes in bfloat16 on a multiple of 16 channels and in
  float32 on fewer (oneDNN's slow bfloat16 kernel), and hands the LeakyReLU after it its output in
  that dtype. In float32 they run as Keras' layers (conv2d_transpose is a backprop-input kernel)
  with no cast anywhere."""
  z = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 50)).astype(np.float32))
  types = {}
  for name in ("float32", "bfloat16"):
    keras.utils.set_random_seed(0)
    g = precision.built(name, Generator)

    def step(z):
      with tf.GradientTape() as tape:
        total = tf.reduce_sum(g(z, training=True) ** 2)  # noqa: B023
      return tape.gradient(total, g.trainable_variables)  # noqa: B023

    graph = tf.function(step).get_concrete_function(z).graph
    types[name] = {op.type for op in graph.get_operations()}
    if name == "bfloat16":  # seed 000's G: BatchNorm on 32, 16 and 8 channels
      ops = graph.get_operations()
      norms = {(op.inputs[0].shape[-1], op.get_attr("T")) for op in ops if op.type == "FusedBatchNormV3"}
      assert norms == {(32, tf.bfloat16), (16, tf.bfloat16), (8, tf.float32)}
      leaky = {(op.outputs[0].shape[-1], op.get_attr("T")) for op in ops if op.type == "LeakyRelu"}
      assert leaky == {(32, tf.bfloat16), (16, tf.bfloat16), (8, tf.float32)}  # after the BatchNorm, in its dtype
  assert "Conv2DBackpropInput" in types["float32"] and "Cast" not in types["float32"]
  assert "Conv2DBackpropInput" not in types["bfloat16"] and "DepthToSpace" in types["bfloat16"]


def test_a_bfloat16_gan_step_updates_as_the_float32_one_from_the_same_weights():
  """One GAN batch (a D step, two G steps) of seed 000's networks in each precision from the same
  weights, batch and noise: the same losses to bfloat16 rounding, float32 variables, and Adam's
  first updates of every kernel pointing the same way (Adam's first step is about lr * sign(g), so
  a gradient with the wrong taps or the wrong sign would turn the update away). The bfloat16 run's
  variables and optimizer state stay float32, its layers compute in bfloat16."""
  x = tf.constant(synthetic_images(64))
  runs = {name: driver.Driver(Config(batch_size=64, precision=name)) for name in ("float32", "bfloat16")}
  for network, model in runs["float32"].networks.items():
    runs["bfloat16"].networks[network].set_weights(model.get_weights())
  noise = tf.constant(runs["float32"].family.noise(np.random.default_rng(0), 64, runs["float32"].config))
  before = {name: [v.numpy() for v in run.trainer.generator.weights + run.trainer.discriminator.weights]
            for name, run in runs.items()}
  out = {}
  for name, run in runs.items():
    step = tf.function(lambda: run.trainer.train_step(x, noise, 0))  # noqa: B023
    losses = step()
    assert all(v.dtype == tf.float32 for v in losses.values())
    out[name] = {k: float(v) for k, v in losses.items()}
  assert all(np.isfinite(v) for v in out["bfloat16"].values())
  for key in ("d_loss", "g_loss"):
    np.testing.assert_allclose(out["bfloat16"][key], out["float32"][key], rtol=4 * 2.0**-8)
  low = runs["bfloat16"].trainer
  assert {v.dtype for v in low.generator.weights + low.discriminator.weights} == {"float32"}
  optimizers = [item for item in low.checkpoint_items().values() if isinstance(item, keras.optimizers.Optimizer)]
  floats = lambda variables: [v.dtype for v in variables if "int" not in v.dtype]  # noqa: E731 (counters aside)
  assert optimizers and set(floats(v for o in optimizers for v in o.variables)) == {"float32"}
  networks = runs["bfloat16"].networks.values()
  assert set(floats(v for n in networks for v in n.weights)) == {"float32"}
  layers_bf16 = [layer for n in networks for layer in n._flatten_layers(include_self=False)
                 if layer.dtype_policy.compute_dtype == "bfloat16"]
  assert layers_bf16 and all(n.dtype_policy.name == "float32" for n in networks)
  assert policy_name() == "float32"
  weights = runs["float32"].trainer.generator.weights + runs["float32"].trainer.discriminator.weights
  after = {name: [v.numpy() for v in run.trainer.generator.weights + run.trainer.discriminator.weights]
           for name, run in runs.items()}
  kernels = [i for i, v in enumerate(weights) if v.path.endswith("kernel")]
  assert len(kernels) == 7  # G: dense, up1, up2, output; D: conv1, conv2, logits
  for i in kernels:
    steps = [(after[name][i] - before[name][i]).ravel() for name in ("float32", "bfloat16")]
    cosine = steps[0] @ steps[1] / (np.linalg.norm(steps[0]) * np.linalg.norm(steps[1]))
    assert cosine > 0.9, (weights[i].path, cosine)


def test_fused_batchnorm_normalises_bfloat16_inputs_of_16_channels_in_the_bfloat16_kernel():
  """On a multiple of 16 channels oneDNN's bfloat16 kernel is about as fast as the float32 one: a
  bfloat16 input is normalised in bfloat16 (float32 statistics), to the float32 layer's numbers
  (outputs, moving statistics, input gradient) within bfloat16 rounding."""
  x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 6, 6, 16)).astype(np.float32))
  with precision.policy("bfloat16"):
    low = layers.FusedBatchNormalization(momentum=0.5)
  full = layers.FusedBatchNormalization(momentum=0.5)
  low.build(x.shape), full.build(x.shape)
  dy = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))

  def step(layer, x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.cast(layer.normalize(tf.cast(x, layer.compute_dtype), training=True), tf.float32)
    return y, tape.gradient(y, x, output_gradients=dy)

  kernels = [op for op in tf.function(lambda x: step(low, x)).get_concrete_function(x).graph.get_operations()
             if op.type.startswith("FusedBatchNorm")]
  assert {op.type for op in kernels} == {"FusedBatchNormV3", "FusedBatchNormGradV3"}
  assert {op.get_attr("T") for op in kernels} == {tf.bfloat16}
  (y_low, dx_low), (y, dx) = step(low, x), step(full, x)
  assert low.normalize(tf.cast(x, tf.bfloat16), training=False).dtype == tf.bfloat16
  np.testing.assert_allclose(y_low, y, atol=8 * 2.0**-8)  # normalised: values of about 1
  np.testing.assert_allclose(dx_low, dx, atol=8 * 2.0**-8 * float(tf.reduce_max(tf.abs(dx))))
  for ours, theirs in ((low.moving_mean, full.moving_mean), (low.moving_variance, full.moving_variance)):
    assert ours.dtype == "float32"
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=4 * 2.0**-8)
