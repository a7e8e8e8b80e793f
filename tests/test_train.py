import csv
import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, synthetic_examples, synthetic_images

from anogan_tf import Config, models, train_lib
from anogan_tf.data import OneClassData
from anogan_tf.engine import checkpoints
from anogan_tf.engine import history as history_lib
from anogan_tf.engine.driver import Driver
from anogan_tf.models import anogan
from anogan_tf.models.base import example_shape
from anogan_tf.nn import precision

TINY = dict(batch_size=32, epochs=2, seed=3)
# Every flagfile in experiments/ (a new preset is covered without editing this file).
PRESET_FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.flags")))


def preset_config(flagfile, **changes):
  """The Config a flagfile resolves to, following its --flagfile includes as absl does (paths
  relative to the repository root, later lines win)."""
  values = {}

  def read(path):
    with open(path if os.path.isabs(path) else os.path.join(ROOT, path)) as f:
      for line in f:
        line = line.strip()
        if not line or line.startswith("#"):
          continue
        name, _, value = line.lstrip("-").partition("=")
        if name == "flagfile":
          read(value)
        else:
          values[name] = value

  read(flagfile)
  # stand-ins for what a preset leaves to the user's data: the folder, the UCR dataset, its series' shape
  if values.get("dataset") in ("folder", "frames"):
    values = {"data_dir": "user-folder", "channels": "3", **values}
  if values.get("dataset") == "ucr":
    values = {"ucr_name": "tiny", "series_length": "32", "series_features": "1", **values}
  return Config.from_strings(values).replace(**changes)


def tiny_data(n=80, shape=(28, 28, 1)):
  x = synthetic_images(n, shape=shape)
  return OneClassData(x_train=x, x_test=x[:8], y_test=np.arange(8) % 2, classes_test=np.zeros(8, int),
                      test_indices=np.arange(8))


def history_epochs(workdir):
  with open(os.path.join(workdir, "history.csv")) as f:
    return [int(row["epoch"]) for row in csv.DictReader(f)]


def _check_trained(config, workdir):
  """The workdir's networks (its checkpoint, restored into a Driver of `config`) trained away from
  their initial weights (every trainable weight and BN statistic moved), and its .keras files
  exactly the checkpoint's networks."""
  family = models.family(config.model)
  trained = Driver(config)
  checkpoints.restore_checkpoint(trained, os.path.join(workdir, "checkpoints"))
  keras.utils.set_random_seed(config.seed)  # as train() does: the initial weights
  fresh = precision.built(config.precision, lambda: family.build_networks(config))
  for name in family.NETWORKS:
    model, other = trained.networks[name], fresh[name]
    assert not any(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.trainable_weights, other.trainable_weights)), name
    assert all(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(_bn_statistics(model), _bn_statistics(other))), name
    exported = keras.models.load_model(os.path.join(workdir, f"{name}.keras"))
    assert [w.path for w in exported.weights] == [w.path for w in model.weights], name
    for a, b in zip(exported.weights, model.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
  return trained


@pytest.mark.slow
def test_a_run_writes_everything_resumes_and_equals_an_uninterrupted_run(tmp_path):
  # Seed 002's preset (experiments/seed002.flags, every layer as it says: BN in G and D, dropout in
  # D, two D updates per batch): 2 epochs write everything; rerun with more epochs, the run resumes
  # at epoch 2 with the optimizers' state restored and ends where a straight 3-epoch run does, bit
  # for bit: the dropout masks of an epoch depend on (seed, epoch) only, as shuffling and z do.
  # (Seed 000's structure, BN in G only, resumes bit for bit across a learning-rate switch in
  # test_families.py::test_resumed_run_equals_uninterrupted_run_bit_for_bit.) Also this preset's
  # case of test_every_preset_trains.
  config = preset_config("experiments/seed002.flags", epochs=3, batch_size=16, seed=5, val_fraction=0.0)
  data = tiny_data(40)  # batches of 16, 16 and 8
  straight = train_lib.train(config, str(tmp_path / "a"), data=data, progress=False)
  workdir = str(tmp_path / "b")
  history = train_lib.train(config.replace(epochs=2), workdir, data=data, progress=False)
  assert [row["epoch"] for row in history] == [0, 1]
  for name in ("flags.txt", "history.csv", "generator.keras", "discriminator.keras", "loss.png",
               "samples/epoch_0001.png", "samples/epoch_0002.png", "checkpoints/checkpoint"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert Config.from_flagfile_text(open(os.path.join(workdir, "flags.txt")).read()) == config.replace(epochs=2)
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-2")
  first_rows = open(os.path.join(workdir, "history.csv")).read().splitlines()

  # Rerun with more epochs: resumes at epoch 2 with the optimizers' state restored.
  resumed = train_lib.train(config, workdir, data=data, progress=False)
  assert [row["epoch"] for row in resumed] == [0, 1, 2]
  assert open(os.path.join(workdir, "history.csv")).read().splitlines()[:3] == first_rows
  drop_seconds = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
  assert drop_seconds(straight) == drop_seconds(resumed)
  for name in ("generator", "discriminator"):
    a, b = (keras.models.load_model(str(tmp_path / run / f"{name}.keras")) for run in ("a", "b"))
    assert len(a.weights) == len(b.weights)
    for u, v in zip(a.weights, b.weights):
      np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=u.path)
  driver = _check_trained(config, workdir)
  batches = -(-40 // 16)
  assert config.d_step == "separate" and config.g_steps == 1
  assert int(driver.epoch.numpy()) == 3
  assert int(driver.trainer.d_optimizers[0].iterations.numpy()) == 3 * batches * 2  # real, then fake
  assert int(driver.trainer.g_optimizers[0].iterations.numpy()) == 3 * batches

  # Rerun with nothing left to do: no new epochs, history untouched.
  train_lib.train(config, workdir, data=data, progress=False)
  assert history_epochs(workdir) == [0, 1, 2]


def test_a_checkpoint_of_the_layout_before_the_families_restores(tmp_path):
  # Workdirs trained before anogan_tf/models existed (the reproduction runs' among them) hold a
  # tf.train.Checkpoint of exactly these objects, under these names: --model=anogan resumes them.
  config = Config(**TINY)
  networks = anogan.build_networks(config)
  g, d = networks["generator"], networks["discriminator"]
  adams = {}
  for name, model, lr in (("d_optimizer", d, config.lr), ("g_optimizer", g, config.lr),
                          ("d_optimizer_after_decay", d, config.lr_after_decay),
                          ("g_optimizer_after_decay", g, config.lr_after_decay)):
    adams[name] = keras.optimizers.Adam(learning_rate=lr, epsilon=config.adam_epsilon)
    adams[name].build(model.trainable_variables)
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  old = tf.train.Checkpoint(generator=g, discriminator=d, generator_weights=list(g.weights),
                            discriminator_weights=list(d.weights), **adams, epoch=epoch)
  rng = np.random.default_rng(0)
  variables = list(g.weights) + list(d.weights) + [v for opt in adams.values() for v in opt.variables] + [epoch]
  for v in variables:  # every value distinct from a fresh build's
    dtype = tf.as_dtype(v.dtype)
    v.assign((rng.integers(1, 100, v.shape) if dtype.is_integer else rng.normal(size=v.shape)).astype(dtype.as_numpy_dtype))
  written = [v.numpy().copy() for v in variables]
  checkpoints.save_checkpoint(old, str(tmp_path), 7)

  driver = Driver(config)
  assert checkpoints.restore_checkpoint(driver, str(tmp_path)) == int(written[-1])
  trainer = driver.trainer
  restored = (list(driver.networks["generator"].weights) + list(driver.networks["discriminator"].weights)
              + [v for opt in (trainer.d_optimizers[0], trainer.g_optimizers[0], trainer.d_optimizers[1],
                               trainer.g_optimizers[1]) for v in opt.variables] + [driver.epoch])
  assert len(restored) == len(written)
  for v, value in zip(restored, written):
    np.testing.assert_array_equal(v.numpy(), value, err_msg=getattr(v, "path", v.name))


def _bn_statistics(model):
  return [v for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)
          for v in (layer.moving_mean, layer.moving_variance)]


def _seed_order_batch(trainer, x, z):
  """Seed 000's batch written out as its three separate TF1 steps (seed 002's: two D updates, real
  then fake, on fakes from G in inference mode, then one G step). Each step runs only its own
  network's update ops: the D step runs G(z) itself and leaves G's BN statistics as they were,
  each G step runs G(z) again and leaves D's BN statistics as they were. Every forward pass
  through D draws fresh dropout masks."""
  from anogan_tf.nn.losses import gan_losses
  g, d = trainer.generator, trainer.discriminator
  config = trainer.config
  g_stats = [tf.identity(v) for v in _bn_statistics(g)]
  if config.d_fakes_mode == "inference":  # seed 002: generator.predict(noise)
    fake = g(z, training=False)
  else:
    fake = g(z, training=True)
  if config.d_step == "joint":
    with tf.GradientTape() as tape:
      d_loss, _, d_acc = gan_losses(d(x, training=True), d(fake, training=True))
    trainer.d_optimizers[0].apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
  else:  # seed 002: discriminator.train_on_batch(imgs, valid), then (gen_imgs, fake)
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
      real_logits = d(x, training=True)
      real_loss = bce(tf.ones_like(real_logits), real_logits)
    trainer.d_optimizers[0].apply_gradients(zip(tape.gradient(real_loss, d.trainable_variables), d.trainable_variables))
    with tf.GradientTape() as tape:
      fake_logits = d(fake, training=True)
      fake_loss = bce(tf.zeros_like(fake_logits), fake_logits)
    trainer.d_optimizers[0].apply_gradients(zip(tape.gradient(fake_loss, d.trainable_variables), d.trainable_variables))
    d_loss, d_acc = real_loss + fake_loss, gan_losses(real_logits, fake_logits)[2]
  for v, value in zip(_bn_statistics(g), g_stats):
    v.assign(value)
  for _ in range(trainer.config.g_steps):
    d_stats = [tf.identity(v) for v in _bn_statistics(d)]
    with tf.GradientTape() as tape:
      logits = d(g(z, training=True), training=True)
      _, g_loss, _ = gan_losses(tf.zeros_like(logits), logits)
    trainer.g_optimizers[0].apply_gradients(zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))
    for v, value in zip(_bn_statistics(d), d_stats):
      v.assign(value)
  return d_loss, d_acc, g_loss


# seed 000's discriminator (no BN, no dropout); seed 001's (BN); seed 002's (BN and dropout 0.25).
# The two others at their presets' structure with narrower layers, which does not change the order
# of steps under test.
SEED_ORDER_CONFIGS = {
    "seed000": lambda: Config(**TINY),
    "seed001_bn": lambda: preset_config("experiments/seed001.flags", batch_size=32, g_dense_channels=16,
                                        g_filters=(8, 8, 8), d_filters=(8, 8, 8, 8)),
    "seed002_bn_dropout": lambda: preset_config("experiments/seed002.flags", batch_size=32, g_dense_channels=16,
                                                g_filters=(8, 8), d_filters=(8, 8, 8, 8)),
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(SEED_ORDER_CONFIGS))
def test_training_batch_equals_the_seeds_order_of_steps(preset):
  # The trainer runs G(z) once for the D step and the first G step; nothing else may change:
  # same losses, weights, BN statistics, dropout masks and Adam moments as the seed's three
  # separate steps.
  config = SEED_ORDER_CONFIGS[preset]()
  ours, seeds = (anogan.GANTrainer(config, anogan.build_networks(config)) for _ in range(2))
  assert bool(_bn_statistics(ours.discriminator)) == config.d_batchnorm
  # .variables: the weights, BN statistics and the dropout layers' random-generator states.
  for mine, theirs in zip(ours.generator.variables + ours.discriminator.variables,
                          seeds.generator.variables + seeds.discriminator.variables):
    theirs.assign(mine)
  @tf.function
  def run_ours(x, z):  # the interface's step, which the driver compiles into its epoch
    out = ours.train_step(x, z, 0)
    return out["d_loss"], out["d_acc"], out["g_loss"]

  run_seeds = tf.function(lambda x, z: _seed_order_batch(seeds, x, z))
  rng = np.random.default_rng(0)
  g_stats = [v.numpy().copy() for v in _bn_statistics(ours.generator)]
  d_stats = [v.numpy().copy() for v in _bn_statistics(ours.discriminator)]
  for _ in range(3):
    x = tf.constant(synthetic_images(32, seed=int(rng.integers(1000))))
    z = tf.constant(rng.uniform(-1, 1, (32, config.latent_dim)).astype(np.float32))
    np.testing.assert_allclose([float(v) for v in run_ours(x, z)], [float(v) for v in run_seeds(x, z)],
                               rtol=1e-6)
  assert not any(np.array_equal(old, v.numpy()) for old, v in zip(g_stats, _bn_statistics(ours.generator)))
  assert not any(np.array_equal(old, v.numpy()) for old, v in zip(d_stats, _bn_statistics(ours.discriminator)))
  pairs = [(ours.generator.variables + ours.discriminator.variables,
            seeds.generator.variables + seeds.discriminator.variables),
           (ours.d_optimizers[0].variables, seeds.d_optimizers[0].variables),
           (ours.g_optimizers[0].variables, seeds.g_optimizers[0].variables)]
  for mine, theirs in pairs:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


def _trained_presets():
  """PRESET_FLAGFILES less those that train what another one trains: the same settings but for the
  evaluation's (EVALUATION_FIELDS: the search, the score), which training never reads, or but for
  the schedule's length (--epochs, --lr_decay_epoch: the test trains one epoch, before any decay),
  or but for training stages (models.base.Stage, e.g. --encoder_epochs) that the other one runs
  after the same epochs of the same networks and this one does not run."""
  from anogan_tf.config import EVALUATION_FIELDS
  default = Config()
  stages = lambda config: models.base.stages(models.family(config.model))  # noqa: E731
  at_default = lambda config, names: config.replace(**{name: getattr(default, name) for name in names})  # noqa: E731

  def trained(config):
    config = at_default(config, [name for name in EVALUATION_FIELDS if name != "data_dir"])
    # the schedule's length, but whether it has a decay at all (lr_decay_epoch 0: one Adam, never replaced)
    return config.replace(epochs=default.epochs, lr_decay_epoch=min(config.lr_decay_epoch, 1))

  def own_epochs(config):  # what the family's own epochs train, before any stage
    return at_default(trained(config), [name for stage in stages(config) for name in (stage.epochs_field,) + stage.fields])

  staged = lambda config: any(getattr(config, stage.epochs_field) for stage in stages(config))  # noqa: E731
  configs = {flagfile: preset_config(flagfile) for flagfile in PRESET_FLAGFILES}
  run_by_a_staged_one = {own_epochs(config) for config in configs.values() if staged(config)}
  seen, out = set(), []
  for flagfile, config in configs.items():
    if trained(config) in seen or (not staged(config) and own_epochs(config) in run_by_a_staged_one):
      continue
    seen.add(trained(config))
    out.append(flagfile)
  return out


# Presets whose training another test runs, with every check below: seed 002's (3 epochs, resumed)
# in test_a_run_writes_everything_resumes_and_equals_an_uninterrupted_run; DRAEM's picture preset as
# users run it, pictures.flags (pictures_draem.flags with --dataset=folder: the same networks and
# settings, on a folder of pictures instead of the default MNIST digits).
TRAINED_ELSEWHERE = ("seed002.flags", "pictures_draem.flags")


@pytest.mark.slow
@pytest.mark.parametrize("flagfile", [f for f in _trained_presets() if os.path.basename(f) not in TRAINED_ELSEWHERE],
                         ids=os.path.basename)
def test_every_preset_trains(flagfile, tmp_path):
  # The preset's own networks (every layer as the flagfile says) of its own family (--model);
  # only the amount of work shrinks (one epoch, and one of a training stage such as the encoder's),
  # and a folder's pictures are the smallest --image_size (32; the preset leaves the size to the
  # pictures, and the networks' depth follows it: tests/test_folder_data.py, tests/test_draem.py).
  config = preset_config(flagfile, epochs=1, batch_size=8, val_fraction=0.0)  # no threshold: the networks only
  config = config.replace(encoder_epochs=min(config.encoder_epochs, 1))
  if config.dataset == "folder":  # training reads the folder's picture headers even when given the data
    config = config.replace(image_size=32)
    good = tmp_path / "data" / "train" / "good"
    good.mkdir(parents=True)
    keras.utils.save_img(str(good / "a.png"), np.zeros(config.image_shape, np.uint8), scale=False)
    config = config.replace(data_dir=str(tmp_path / "data"))
  x = synthetic_examples(12, example_shape(models.family(config.model), config))  # a full and a partial batch
  data = OneClassData(x_train=x, x_test=x[:8], y_test=np.arange(8) % 2, classes_test=np.zeros(8, int),
                      test_indices=np.arange(8))
  workdir = str(tmp_path / "run")
  history = train_lib.train(config, workdir, data=data, progress=False)
  trained = _check_trained(config, workdir)
  assert len(history) == 1 and all(np.isfinite(history[0][k]) for k in trained.trainer.loss_names)


@pytest.mark.slow
def test_an_epoch_with_dropout_is_traced_once():
  config = preset_config("experiments/seed002.flags", batch_size=8, g_dense_channels=16, g_filters=(8, 8),
                         d_filters=(8, 8, 8, 8))
  driver = Driver(config)
  x = tf.constant(synthetic_images(16))
  for epoch in range(3):
    driver.train_epoch(x, epoch)
  assert driver.epoch_function(0, (config.latent_dim,)).experimental_get_tracing_count() == 1
  assert driver.epoch_function(1, (config.latent_dim,)).experimental_get_tracing_count() == 0


def test_d_acc_thresholds_logits_at_zero():
  from anogan_tf.nn.losses import gan_losses
  real = tf.constant([[0.2], [-0.1]])  # one right (> 0), one wrong
  fake = tf.constant([[-0.3], [0.4]])  # one right (<= 0), one wrong
  _, _, acc = gan_losses(real, fake)
  assert float(acc) == pytest.approx(0.5)
  d_loss, g_loss, _ = gan_losses(tf.zeros((4, 1)), tf.zeros((4, 1)))
  assert float(d_loss) == pytest.approx(2 * np.log(2), rel=1e-6)
  assert float(g_loss) == pytest.approx(np.log(2), rel=1e-6)


def test_history_csv_is_written_with_the_csv_module(tmp_path):
  path = str(tmp_path / "history.csv")
  fields = history_lib.history_fields(anogan.GANTrainer.loss_names)
  assert fields == ("epoch", "g_loss", "d_loss", "d_acc", "seconds")  # seed 000's columns, kept
  rows = [{"epoch": 0, "g_loss": 0.5, "d_loss": 1.25, "d_acc": 0.75, "seconds": 2.0},
          {"epoch": 1, "g_loss": float("nan"), "d_loss": 1e-9, "d_acc": 1.0, "seconds": 0.1}]
  history_lib.write_history(path, rows[:1], fields)
  history_lib.append_history(path, rows[1], fields)
  assert open(path).read() == ("epoch,g_loss,d_loss,d_acc,seconds\n"
                               "0,0.5,1.25,0.75,2.0\n1,nan,1e-09,1.0,0.1\n")  # the format is kept
  back = history_lib.read_history(path)
  assert [row["epoch"] for row in back] == [0, 1] and back[0] == rows[0]
  # A value holding the delimiter, a quote or a line break is quoted, not split into columns.
  odd = {"epoch": 2, "g_loss": "1,5", "d_loss": 'a "b"', "d_acc": "x\ny", "seconds": 3.0}
  history_lib.write_history(path, rows[:1], fields)
  history_lib.append_history(path, odd, fields)
  with open(path, newline="") as f:
    read = list(csv.DictReader(f))
  assert read[1] == {k: str(v) for k, v in odd.items()}


@pytest.mark.slow
def test_init_seed_offset_draws_training_from_the_offset_seed_and_the_data_from_the_seed(tmp_path, mnist_dir):
  # Another model on the same images (an ensemble over training seeds): every draw of training
  # (initial weights, batches, noise, DiffAugment, the warm-start encoder's) comes from --seed +
  # --init_seed_offset, so on the same images seed 0 + 1000 trains what seed 1000 trains; the
  # held-out split and the training images come from --seed alone.
  from anogan_tf.data import load_one_class
  data_config = Config(data_dir=mnist_dir, normal_classes=(1,), train_examples=64, val_fraction=0.25,
                       eval_split="val", test_examples=32)
  offset, plain, other = (load_one_class(data_config.replace(**kw)) for kw in (
      dict(init_seed_offset=1000), {}, dict(seed=1000)))
  for a, b in ((offset.x_train, plain.x_train), (offset.x_test, plain.x_test), (offset.y_test, plain.y_test)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(offset.x_train, other.x_train) and not np.array_equal(offset.x_test, other.x_test)

  config = Config(latent_dim=8, g_dense_channels=8, g_filters=(8, 4), d_filters=(4, 8), e_filters=(4, 8), batch_size=16,
                  epochs=1, encoder_epochs=1, diffaugment="translation", deterministic=True)
  x = synthetic_images(32)
  given = OneClassData(x_train=x, x_test=x[:4], y_test=np.arange(4) % 2, classes_test=np.zeros(4, int),
                       test_indices=np.arange(4))
  runs = {}
  for name, kw in {"offset": dict(seed=0, init_seed_offset=1000), "seed": dict(seed=1000)}.items():
    history = train_lib.train(config.replace(**kw), str(tmp_path / name), data=given, progress=False)
    weights = [w for net in ("generator", "discriminator", "encoder")
               for w in keras.models.load_model(tmp_path / name / f"{net}.keras").weights]
    runs[name] = ([{k: v for k, v in row.items() if k != "seconds"} for row in history], weights)
  assert runs["offset"][0] == runs["seed"][0]  # (that another seed trains otherwise: the determinism tests)
  for a, b in zip(runs["offset"][1], runs["seed"][1]):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
