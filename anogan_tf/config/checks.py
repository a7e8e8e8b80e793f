"""The settings' checks: every rule a Config must meet, each failure a one-line AnoganError naming
the flag and the fix. Rules of one model family live in that family (`check_config`), which the
family registry adds here (`FAMILY_CHECKS`), so this layer never imports a family."""

from __future__ import annotations

import functools
import math
from typing import Callable, List

from anogan_tf.config.layouts import blocks_for_size, discriminator_feature_layers
from anogan_tf.config.values import (
  ACTIVATIONS,
  DATASETS,
  DENSE_NORMS,
  DIFFAUGMENT_POLICIES,
  DISTRIBUTIONS,
  GAN_LOSSES,
  IMAGE_SIZES,
  NATIVE_SHAPES,
  PICTURE_DATASETS,
  PRECISIONS,
  REDUCTIONS,  # noqa: F401 (one_of: re-exported)
  UPSAMPLINGS,
  examples_of,
  flag_text,
  one_of,
)
from anogan_tf.errors import AnoganError

# Checks that the layers above add (anogan_tf.models: the --model value and each family's own
# rules); each takes the Config and raises AnoganError.
FAMILY_CHECKS: List[Callable] = []


def need(ok, message: str) -> None:
  """AnoganError(message) unless `ok`."""
  if not ok:
    raise AnoganError(message)


def check_number(config, name: str, low, high=None, low_open=False, high_open=True, fix="") -> None:
  """Setting `name` (a number, or each number of a tuple) finite and within [low, high) (or as told)."""
  value = getattr(config, name)
  values = value if isinstance(value, tuple) else (value,)
  if all(math.isfinite(v) and (v > low if low_open else v >= low)
         and (high is None or (v < high if high_open else v <= high)) for v in values):
    return
  if not all(math.isfinite(v) for v in values):
    rule = "not a finite number"
  elif high is not None:
    rule = f"outside {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
  else:
    rule = "not positive" if low_open and low == 0 else f"below {low:g}"
  what = "has an entry that is" if isinstance(value, tuple) else "is"
  raise AnoganError(f"--{name}={flag_text(value)} {what} {rule}; {fix}")


def check_images(config) -> None:
  """The image shape's settings (a dataset of images, or of clips: their frames'); checked before
  the networks' settings, whose depth follows it."""
  folder = config.dataset in PICTURE_DATASETS
  own = f"64 for --dataset={config.dataset}" if folder else f"{NATIVE_SHAPES[config.dataset][0]} for {config.dataset}"
  need(config.image_size == 0 or config.image_size in IMAGE_SIZES
       or not folder and config.image_size == NATIVE_SHAPES[config.dataset][0],
       f"unsupported --image_size={config.image_size}; use 32, 64, 128 or 256 (or 0: the dataset's own size, {own})")
  need(config.channels in (0, 1, 3), f"unsupported --channels={config.channels}; use 1 (grayscale), 3 (RGB) or 0 "
                                     "(the dataset's own)")
  if not folder:
    native = NATIVE_SHAPES[config.dataset][2]
    need(config.channels in (0, native), f"--channels={config.channels} does not fit {config.dataset}, whose images "
                                         f"have {native} channel{'s' * (native > 1)}; use --channels=0, or "
                                         "--dataset=folder for your own images")
  need(config.dataset != "folder" or config.data_dir, "--dataset=folder needs --data_dir=ROOT; use the folder "
                                                      "holding train/good/ and test/ (MVTec AD layout)")
  need(config.dataset != "frames" or config.data_dir, "--dataset=frames needs --data_dir=ROOT; use the folder "
                                                      "holding train/<clip>/ and test/<clip>/ of frame pictures")


def check_clips(config) -> None:
  """The clips' settings: frames per clip, the network's window and its ConvLSTM layers."""
  check_number(config, "clip_length", 1, fix="use the number of frames per clip, e.g. 20")
  check_number(config, "clip_window", 1, fix="use the number of frames the network sees at once, e.g. 10")
  check_number(config, "convlstm_filters", 1, fix="use positive filter counts, e.g. 64,32,64")


def check_series(config) -> None:
  """The series' settings: --dataset=ucr names its dataset; shapes and range well formed."""
  need(config.dataset != "ucr" or config.ucr_name, "--dataset=ucr needs --ucr_name=NAME, the archive's dataset "
                                                   "(the folder ROOT/NAME holding NAME_TRAIN.tsv), e.g. GunPoint")
  need(examples_of(config.dataset) != "series" or (config.image_size == 0 and config.channels == 0),
       f"--dataset={config.dataset} holds series, which have no --image_size or --channels; drop them")
  check_number(config, "series_length", 0, fix="use 0 (the training series' own) or the number of time steps")
  check_number(config, "series_features", 0, fix="use 0 (the training series' own) or the values per time step")
  check_number(config, "lstm_units", 1, fix="use positive LSTM sizes, e.g. 64")
  need(len(config.lstm_units) > 0, "--lstm_units is empty; give at least one LSTM size, e.g. 64")
  check_number(config, "lstm_max_steps", 0, fix="use 0 (one LSTM step per time step) or the most steps the LSTMs run, "
                                                 "e.g. 64")
  low_high = config.series_range
  need(not low_high or (len(low_high) == 2 and all(math.isfinite(v) for v in low_high) and low_high[0] < low_high[1]),
       f"--series_range={flag_text(low_high)} is not low,high with low < high; use e.g. -2.5,3.1, or leave it empty "
       "(the training series' min and max)")


def check(config) -> None:
  """Rejects settings that cannot work, with a one-line message naming the flag and the fix."""
  number = functools.partial(check_number, config)

  one_of(config.dataset, DATASETS, "dataset")
  images = examples_of(config.dataset) in ("images", "clips")  # clips: of frames, images in their shape
  if images:
    check_images(config)
  check_series(config)
  check_clips(config)
  need(len(config.normal_classes) > 0, "--normal_classes is empty; give at least one class, e.g. --normal_classes=0")
  one_of(config.z_prior, DISTRIBUTIONS, "--z_prior")
  one_of(config.z_init, DISTRIBUTIONS, "--z_init")
  one_of(config.g_upsampling, UPSAMPLINGS, "--g_upsampling")
  one_of(config.g_activation, ACTIVATIONS, "--g_activation")
  one_of(config.map_reduction, REDUCTIONS, "--map_reduction")
  one_of(config.d_step, ("joint", "separate"), "--d_step")
  one_of(config.d_fakes_mode, ("training", "inference"), "--d_fakes_mode")
  one_of(config.eval_split, ("test", "val"), "--eval_split")
  one_of(config.recon_loss, ("l1", "l2"), "--recon_loss")
  one_of(config.vae_score, ("reconstruction", "elbo"), "--vae_score")
  one_of(config.precision, PRECISIONS, "--precision")
  one_of(config.strategy, ("default", "mirrored", "multiworker"), "--strategy")  # distribute.STRATEGIES
  one_of(config.gan_loss, GAN_LOSSES, "--gan_loss")
  for policy in (p for p in config.diffaugment.split(",") if p):
    one_of(policy, DIFFAUGMENT_POLICIES, "--diffaugment entry")
  need(config.gan_loss != "wgan_gp" or not config.d_batchnorm,
       "--gan_loss=wgan_gp penalises each image's own gradient, which BatchNorm in D mixes across the batch; "
       "use --d_batchnorm=false with it")
  one_of(config.g_dense_norm, DENSE_NORMS, "--g_dense_norm")
  if config.g_dense_activation:
    one_of(config.g_dense_activation, ACTIVATIONS, "--g_dense_activation")
  need(all(1 <= i <= len(config.d_filters) for i in config.d_zero_pad_after),
       f"--d_zero_pad_after={flag_text(config.d_zero_pad_after)} names no convolution; use numbers 1.."
       f"{len(config.d_filters)} (one per entry of --d_filters), or leave it empty")
  layers = discriminator_feature_layers(len(config.d_filters) + (blocks_for_size(config.image_side) if images else 0),
                                        config.d_batchnorm, config.d_dropout,
                                        config.d_batchnorm_first, config.d_zero_pad_after)
  need(config.feature_layer in layers,
       f"unknown --feature_layer '{config.feature_layer}'; use one of {', '.join(layers)}")
  need(len(config.g_strides) == len(config.g_filters) + 1,
       "--g_strides needs one stride per entry of --g_filters plus one for the output layer")
  need(len(config.d_strides) == len(config.d_filters), "--d_strides needs one stride per entry of --d_filters")
  need(config.strategy == "default" or config.dataset != "folder",
       f"--strategy={config.strategy} trains from arrays in memory only, not from a folder streamed from disk yet; "
       "use --strategy=default for --dataset=folder")
  number("ink_power", 0, fix="use 0 (the raw score) or a positive power, e.g. 0.5 or 1")
  number("seed", 0, fix="use 0 or a positive integer")
  number("map_seed", -1, fix="use -1 (the search starts from --seed) or a seed of 0 or more")
  # networks
  number("latent_dim", 1, fix="use a positive latent size, e.g. 50")
  number("g_dense_channels", 1, fix="use a positive channel count, e.g. 32")
  number("g_filters", 1, fix="use positive filter counts, e.g. 16,8")
  number("g_strides", 1, fix="use strides of 1 or more, e.g. 2,2,1")
  number("e_filters", 1, fix="use positive filter counts, e.g. 16,32")
  number("e_strides", 1, fix="use strides of 1 or more, e.g. 2,2")
  number("d_filters", 1, fix="use positive filter counts, e.g. 16,32")
  number("d_strides", 1, fix="use strides of 1 or more, e.g. 2,2")
  number("d_dropout", 0, 1, fix="use a dropout rate such as 0.25, or 0 for none")
  number("leaky_slope", 0, 1, fix="use a LeakyReLU slope such as 0.2")
  number("bn_momentum", 0, 1, fix="use a BatchNorm momentum such as 0.99")
  # training
  number("epochs", 0, fix="use 0 or more epochs")
  number("batch_size", 1, fix="use a positive batch size, e.g. 256")
  number("g_steps", 0, fix="use 0 or more generator steps per discriminator step (seed 000: 2)")
  number("lr", 0, low_open=True, fix="use a positive learning rate, e.g. 0.001")
  number("d_lr_scale", 0, low_open=True, fix="use a positive factor, e.g. 0.25")
  number("d_z_units", 1, fix="use a positive width, e.g. 128")
  number("d_joint_units", 1, fix="use positive widths, e.g. 128")
  number("lr_decay_epoch", 0, fix="use the epoch to switch at, or 0 for never")
  number("lr_after_decay", 0, low_open=True, fix="use a positive learning rate, e.g. 0.0001")
  number("adam_beta_1", 0, 1, fix="use a value such as 0.9")
  number("adam_beta_2", 0, 1, fix="use a value such as 0.999")
  number("adam_epsilon", 0, low_open=True, fix="use a small positive value, e.g. 1e-8")
  number("ema_momentum", 0, 1, fix="use 0 (export the last weights) or a momentum such as 0.99")
  number("kl_weight", 0, fix="use a weight such as 1.0 (0: a plain autoencoder)")
  number("kappa", 0, fix="use a weight such as 1.0")
  number("gp_weight", 0, fix="use a weight such as 10 (Gulrajani et al.)")
  # mapping
  number("lam", 0, 1, high_open=False, fix="use a weight such as 0.7 (seed 000) or 0.1 (the paper)")
  number("map_lrs", 0, low_open=True, fix="use positive learning rates, e.g. 0.1,0.01")
  number("z_init_std", 0, low_open=True, fix="use a positive standard deviation, e.g. 0.1")
  number("map_batch_size", 0, fix="use a positive batch size, or 0 to choose it from the available memory")
  # data
  number("test_examples", 0, fix="use 0 for the whole test split, or the number of test images to score")
  number("train_examples", 0, fix="use 0 for every normal training image, or how many to keep")
  number("val_fraction", 0, 1, fix="e.g. 0.1 holds out a tenth of the normal training images; 0: none")
  need(config.eval_split != "val" or config.val_fraction > 0,
       "--eval_split=val needs held-out images: train with --val_fraction > 0 (e.g. 0.1)")
  need(len(config.e_strides) == len(config.e_filters), "--e_strides needs one stride per entry of --e_filters")
  # decision threshold
  number("threshold_percentile", 0, 100, high_open=False,
         fix="use a percentile such as 99 (about 1% of normal images flagged)")
  for family_check in FAMILY_CHECKS:
    family_check(config)
