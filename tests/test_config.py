"""Config: every setting that cannot work is a one-line AnoganError naming the flag and the fix."""

import dataclasses
import math
import os
import re

import pytest

from anogan_tf import AnoganError, Config
from anogan_tf.cli import flags as anogan_flags
from anogan_tf.config import EVALUATION_FIELDS, evaluation_config, flag_text

# (changed settings, the start of the message: the flag as given)
BAD_SETTINGS = [
    (dict(d_dropout=1.0), "--d_dropout=1.0 is outside [0, 1)"),
    (dict(d_dropout=-0.1), "--d_dropout=-0.1 is outside [0, 1)"),
    (dict(g_strides=(2, 0, 1)), "--g_strides=2,0,1 has an entry that is below 1"),
    (dict(g_strides=(2, -2, 1)), "--g_strides=2,-2,1 has an entry that is below 1"),
    (dict(d_strides=(0, 2)), "--d_strides=0,2 has an entry that is below 1"),
    (dict(d_strides=(-1, 2)), "--d_strides=-1,2 has an entry that is below 1"),
    (dict(g_filters=(16, 0)), "--g_filters=16,0 has an entry that is below 1"),
    (dict(d_filters=(0, 32)), "--d_filters=0,32 has an entry that is below 1"),
    (dict(g_dense_channels=0), "--g_dense_channels=0 is below 1"),
    (dict(latent_dim=0), "--latent_dim=0 is below 1"),
    (dict(leaky_slope=-0.2), "--leaky_slope=-0.2 is outside [0, 1)"),
    (dict(bn_momentum=1.0), "--bn_momentum=1.0 is outside [0, 1)"),
    (dict(bn_momentum=-0.5), "--bn_momentum=-0.5 is outside [0, 1)"),
    (dict(epochs=-1), "--epochs=-1 is below 0"),
    (dict(batch_size=0), "--batch_size=0 is below 1"),
    (dict(g_steps=-1), "--g_steps=-1 is below 0"),
    (dict(lr=0.0), "--lr=0.0 is not positive"),
    (dict(lr=-0.001), "--lr=-0.001 is not positive"),
    (dict(lr=math.nan), "--lr=nan is not a finite number"),
    (dict(lr=math.inf), "--lr=inf is not a finite number"),
    (dict(lr_decay_epoch=-1), "--lr_decay_epoch=-1 is below 0"),
    (dict(lr_after_decay=0.0), "--lr_after_decay=0.0 is not positive"),
    (dict(adam_beta_1=1.0), "--adam_beta_1=1.0 is outside [0, 1)"),
    (dict(adam_beta_2=1.5), "--adam_beta_2=1.5 is outside [0, 1)"),
    (dict(adam_beta_1=-0.1), "--adam_beta_1=-0.1 is outside [0, 1)"),
    (dict(adam_epsilon=0.0), "--adam_epsilon=0.0 is not positive"),
    (dict(lam=1.5), "--lam=1.5 is outside [0, 1]"),
    (dict(map_steps=(50, 0)), "--map_steps=50,0 has an entry that is below 1"),
    (dict(map_lrs=(0.1, 0.0)), "--map_lrs=0.1,0.0 has an entry that is not positive"),
    (dict(map_lrs=(-0.1, 0.01)), "--map_lrs=-0.1,0.01 has an entry that is not positive"),
    (dict(z_init_std=0.0), "--z_init_std=0.0 is not positive"),
    (dict(z_init_std=-1.0), "--z_init_std=-1.0 is not positive"),
    (dict(map_batch_size=-3), "--map_batch_size=-3 is below 0"),
    (dict(ink_power=-0.5), "--ink_power=-0.5 is below 0"),
    (dict(ink_power=float("nan")), "--ink_power=nan is not a finite number"),
    (dict(d_lr_scale=0.0), "--d_lr_scale=0.0 is not positive"),
    (dict(d_z_units=0), "--d_z_units=0 is below 1"),
    (dict(d_joint_units=(128, 0)), "--d_joint_units=128,0 has an entry that is below 1"),
    (dict(seed=-1), "--seed=-1 is below 0"),
    (dict(map_seed=-2), "--map_seed=-2 is below -1"),
    (dict(test_examples=-5), "--test_examples=-5 is below 0"),
    (dict(z_init="gaussian"), "unknown --z_init 'gaussian'; use uniform or normal"),
    (dict(map_reduction="summ"), "unknown --map_reduction 'summ'; use mean or sum"),
    (dict(dataset="imagenet"), "unknown dataset 'imagenet'; use one of mnist, fashion_mnist, cifar10"),
    (dict(feature_layer="logits"), "unknown --feature_layer 'logits'; use one of conv1, act1, conv2, act2, flatten"),
    (dict(feature_layer="bn1"), "unknown --feature_layer 'bn1'; use one of conv1, act1, conv2, act2, flatten"),
    (dict(feature_layer="bn3", d_batchnorm=True, d_dropout=0.25),
     "unknown --feature_layer 'bn3'; use one of conv1, bn1, act1, drop1, conv2, bn2, act2, drop2, flatten"),
]


@pytest.mark.parametrize("changes, start", BAD_SETTINGS, ids=[start.split(" ")[0] for _, start in BAD_SETTINGS])
def test_bad_settings_are_one_line_errors_naming_the_flag_and_the_fix(changes, start):
  with pytest.raises(AnoganError) as error:
    Config(**changes)
  message = str(error.value)
  assert message.startswith(start), message
  assert "\n" not in message
  assert "; use " in message  # the fix


@pytest.mark.parametrize("changes", [
    dict(d_dropout=0.0), dict(d_dropout=0.25), dict(g_steps=0), dict(lr_decay_epoch=0), dict(epochs=0),
    dict(bn_momentum=0.0), dict(leaky_slope=0.0), dict(adam_beta_1=0.0), dict(lam=0.0), dict(lam=1.0),
    dict(g_strides=(1, 1, 1)), dict(map_batch_size=0), dict(seed=0), dict(z_init="normal", z_init_std=0.1),
    dict(map_seed=-1), dict(map_seed=0),
])
def test_edge_settings_that_work_are_accepted(changes):
  config = Config(**changes)  # no AnoganError
  assert {name: getattr(config, name) for name in changes} == changes  # held as given, not adjusted


# --- the presets: absl's parsing of experiments/*.flags, as the command-line tools parse them

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("mnist", "paper", "seed001", "seed002")


def test_seed_000_preset_is_exactly_the_default_config(monkeypatch):
  monkeypatch.chdir(ROOT)  # the README's command line, run from the repository root
  config = anogan_flags.config_from_args(["--flagfile=experiments/mnist.flags"])
  assert config == Config()
  # Seed 000, spelled out: the TF1 code's schedule, batch, steps, priors.
  assert (config.epochs, config.batch_size, config.g_steps) == (200, 256, 2)
  assert (config.lr, config.lr_decay_epoch, config.lr_after_decay) == (1e-3, 150, 1e-4)
  assert config.z_prior == "uniform" and config.z_init == "uniform"
  assert (config.latent_dim, config.lam, config.map_steps, config.map_lrs) == (50, 0.7, (50, 100), (0.1, 0.01))
  assert (config.adam_beta_1, config.adam_epsilon, config.leaky_slope) == (0.9, 1e-8, 0.2)
  assert config.feature_layer == "act1" and config.map_reduction == "mean"


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_resolve_the_same_from_any_directory(preset, tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  from_root = anogan_flags.config_from_args([f"--flagfile=experiments/{preset}.flags", "--normal_classes=3"])
  monkeypatch.chdir(tmp_path)  # their nested --flagfile=experiments/base.flags is not under tmp_path
  path = os.path.join(ROOT, "experiments", f"{preset}.flags")
  assert anogan_flags.config_from_args([f"--flagfile={path}", "--normal_classes=3"]) == from_root
  relative = os.path.relpath(path, tmp_path)
  assert anogan_flags.config_from_args(["--flagfile", relative, "--normal_classes=3"]) == from_root
  assert from_root.normal_classes == (3,)  # a flag after the flagfile wins


def test_paper_preset_changes_only_the_mapping_of_seed_000():
  paper = anogan_flags.config_from_args([f"--flagfile={ROOT}/experiments/paper.flags"])
  assert paper == Config(lam=0.1, map_steps=(50, 450), map_lrs=(0.1, 0.01), map_reduction="sum")


def test_nested_flagfiles_are_found_next_to_the_including_file(tmp_path, monkeypatch):
  (tmp_path / "presets" / "common").mkdir(parents=True)
  (tmp_path / "presets" / "common" / "data.flags").write_text("--normal_classes=4\n--seed=9\n")
  (tmp_path / "presets" / "mine.flags").write_text(
      "# a comment\n// another\n\n--flagfile=common/data.flags\n--lam=0.2\n--flagfile=\n")
  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path / "elsewhere")
  config = anogan_flags.config_from_args(["--flagfile=../presets/mine.flags", "--seed=2"])
  assert (config.normal_classes, config.seed, config.lam) == ((4,), 2, 0.2)


@pytest.mark.parametrize("content, message", [
    ("--flagfile=nowhere.flags\n", "cannot read flagfile {cwd}/nowhere.flags (included from {path}): No such file"),
    ("--flagfile=loop.flags\n", "flagfile {path} includes itself"),
])
def test_bad_nested_flagfiles_are_one_line_errors(tmp_path, monkeypatch, content, message):
  path = tmp_path / "loop.flags"
  path.write_text(content)
  monkeypatch.chdir(tmp_path)
  with pytest.raises(AnoganError, match=re.escape(message.format(cwd=tmp_path, path=path))):
    anogan_flags.config_from_args([f"--flagfile={path}"])
  with pytest.raises(AnoganError, match=re.escape(f"cannot read flagfile {tmp_path}/missing.flags: No such file")):
    anogan_flags.config_from_args(["--flagfile=missing.flags"])


# --- evaluate and score: mapping settings from the command line, the rest fixed by the workdir

# A valid other value for every setting that is not an evaluation setting.
TRAINING_ALTERNATIVES = dict(
    dataset="fashion_mnist", normal_classes=(3,), train_examples=100, latent_dim=20, z_prior="normal",
    g_dense_channels=8, g_filters=(8, 4), g_strides=(1, 2, 2), g_upsampling="nearest", g_batchnorm=False,
    g_dense_batchnorm=False, g_activation="relu", d_filters=(8, 16), d_strides=(1, 2), d_batchnorm=True,
    d_dropout=0.25, leaky_slope=0.01, bn_momentum=0.8, epochs=5, batch_size=64, g_steps=1, lr=2e-4,
    lr_decay_epoch=0, lr_after_decay=1e-5, adam_beta_1=0.5, adam_beta_2=0.99, ema_momentum=0.99, model="ae",
    val_fraction=0.1,
    e_filters=(8, 4), e_strides=(1, 2), e_batchnorm=True, d_step="separate", d_fakes_mode="inference",
    recon_loss="l2", kl_weight=0.5, encoder_epochs=3, kappa=0.5, g_dense_norm="feature",
    g_dense_activation="relu", d_batchnorm_first=False, d_zero_pad_after=(2,),
    d_z_units=64, d_joint_units=(256, 64), d_lr_scale=0.25, d_spectral_norm=True, gan_loss="wgan_gp", gp_weight=5.0,
    diffaugment="color,cutout")
# The image shape (folder datasets' settings): MNIST resized to 32, its own 1 channel given.
TRAINING_ALTERNATIVES.update(image_size=32, channels=1)
# The series' settings (--dataset=ucr, --model=lstm_ae): which series, their shape and scale, the LSTMs.
TRAINING_ALTERNATIVES.update(ucr_name="GunPoint", series_length=150, series_features=1, series_range=(-2.0, 3.0),
                             lstm_units=(32, 16), lstm_max_steps=64)
# Clips (--model=convlstm_ae): frames per example, the network's window and its ConvLSTM layers.
TRAINING_ALTERNATIVES.update(clip_length=10, clip_window=5, convlstm_filters=(8, 8))
# Another model on the same images: training's draws from --seed plus an offset.
TRAINING_ALTERNATIVES.update(init_seed_offset=1000)
# DRAEM (--model=draem): its U-Nets' widths and the simulated anomalies it trains on.
TRAINING_ALTERNATIVES.update(draem_width=8, draem_seg_width=8, draem_anomaly_fraction=0.25, draem_texture_fraction=0.25,
                             draem_smooth_fraction=0.25, draem_scar_fraction=0.25, draem_flat_fraction=0.25,
                             draem_rotate_fraction=0.25, draem_dihedral_fraction=0.5, draem_perlin_threshold=0.3,
                             draem_perlin_min_cell=4, draem_beta_max=0.5,
                             draem_focal_gamma=1.0)


def test_every_setting_is_an_evaluation_setting_or_fixed_by_training():
  # seed is training's too, but read at evaluation as --map_seed when it differs (its own test below).
  names = {f.name for f in dataclasses.fields(Config)}
  assert set(EVALUATION_FIELDS) | set(TRAINING_ALTERNATIVES) | {"seed"} == names
  assert not set(EVALUATION_FIELDS) & (set(TRAINING_ALTERNATIVES) | {"seed"})
  # Whatever changes the mapping can be set at evaluation: the others leave the mapper alone.
  for name, value in TRAINING_ALTERNATIVES.items():
    assert Config().replace(**{name: value}).mapper_kwargs() == Config().mapper_kwargs(), name


def test_evaluation_takes_the_mapping_settings_given():
  trained = Config(normal_classes=(3,), g_filters=(8, 4), epochs=20)
  requested = trained.replace(lam=0.1, map_steps=(50, 450), map_lrs=(0.1, 0.01), map_reduction="sum",
                              z_init="normal", z_init_std=0.5, adam_epsilon=1e-7, map_batch_size=64,
                              feature_layer="flatten", map_seed=7, deterministic=True, data_dir="/data",
                              test_examples=100)
  assert evaluation_config(trained, requested) == requested
  assert evaluation_config(trained, trained) == trained
  assert evaluation_config(trained, trained.replace(epochs=200)) == trained  # ignored, not refused


@pytest.mark.parametrize("name", [n for n in TRAINING_ALTERNATIVES if n != "epochs"])
def test_evaluation_refuses_a_different_value_of_a_setting_the_networks_fix(name):
  trained = Config()
  value = TRAINING_ALTERNATIVES[name]
  with pytest.raises(AnoganError) as error:
    evaluation_config(trained, trained.replace(**{name: value}))
  message = str(error.value)
  assert message.startswith(f"--{name}={flag_text(value)} does not match the workdir, trained with "
                            f"--{name}={flag_text(getattr(trained, name))}; "), message
  assert f"drop --{name}" in message and "\n" not in message


def test_every_scoring_setting_leaves_training_alone_except_adam_epsilon_and_precision():
  """A setting evaluate takes from its own command line does not change what training computes,
  so a workdir resumes (and reproduce.py shares its GAN) whatever its value; only adam_epsilon
  (training's Adam and the search's) and precision (the numbers training and scoring compute
  with) are read by both."""
  from anogan_tf.config import RESUMABLE_FIELDS
  assert set(EVALUATION_FIELDS) - RESUMABLE_FIELDS == {"adam_epsilon", "precision"}


def test_seed_on_evaluate_moves_the_search_start_only_never_the_split():
  """The workdir's seed fixed its held-out split and test subset; evaluate, score and export keep
  it, so they never score a training image. Another --seed there (typed, or from a flagfile such
  as experiments/base.flags) is the search's start, as it was before --map_seed existed."""
  trained = Config(seed=3, val_fraction=0.1)
  assert trained.mapper_kwargs()["seed"] == 3  # the start: the training seed unless told
  config = evaluation_config(trained, trained.replace(seed=1))
  assert config.seed == 3  # data.validation_split / test_subset read this
  assert config.mapper_kwargs()["seed"] == 1 and config.map_seed == 1
  assert config.replace(map_seed=-1) == trained  # nothing else moved
  # --map_seed given names the start; a --seed beside it (a preset's) changes nothing more.
  config = evaluation_config(trained, trained.replace(seed=0, map_seed=5))
  assert (config.seed, config.mapper_kwargs()["seed"]) == (3, 5)
  assert evaluation_config(trained, trained.replace(map_seed=5)).mapper_kwargs()["seed"] == 5
  # No override: the workdir's settings, the start at the training seed as before.
  assert evaluation_config(trained, trained) == trained
  # Through the command line as evaluate parses it, with the preset that sets --seed=0.
  requested = anogan_flags.config_from_args([f"--flagfile={ROOT}/experiments/base.flags", "--eval_split=val"], trained)
  config = evaluation_config(trained, requested)
  assert (config.seed, config.eval_split, config.mapper_kwargs()["seed"]) == (3, "val", 0)


def test_a_flags_txt_without_map_seed_loads_with_the_search_starting_at_the_seed():
  """A workdir written before --map_seed existed: its flags.txt has no such line."""
  lines = Config(seed=3).to_flagfile().splitlines(keepends=True)
  text = "".join(line for line in lines if not line.startswith("--map_seed="))
  old = Config.from_flagfile_text(text)
  assert old == Config(seed=3) and old.map_seed == -1
  assert old.mapper_kwargs()["seed"] == 3
  assert evaluation_config(old, old) == old


def test_the_docs_list_every_setting_evaluate_takes():
  import glob
  sentence = "`evaluate` and `score` take mapping settings from their command line ("
  found = []
  for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
    with open(path, encoding="utf-8") as f:
      text = " ".join(f.read().split())  # lines joined
    for start in [m.end() for m in re.finditer(re.escape(sentence), text)]:
      found.append((path, sorted(re.findall(r"`--(\w+)`", text[start:text.index(")", start)]))))
  assert found and all(listed == sorted(EVALUATION_FIELDS) for _, listed in found), found
