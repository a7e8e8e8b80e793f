"""Config: every setting that cannot work is a one-line AnoganError naming the flag and the fix."""

import math

import pytest

from anogan_tf import AnoganError, Config

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
    (dict(seed=-1), "--seed=-1 is below 0"),
    (dict(test_examples=-5), "--test_examples=-5 is below 0"),
    (dict(z_init="gaussian"), "unknown --z_init 'gaussian'; use uniform or normal"),
    (dict(map_reduction="summ"), "unknown --map_reduction 'summ'; use mean or sum"),
    (dict(dataset="imagenet"), "unknown dataset 'imagenet'; use one of mnist, fashion_mnist, cifar10"),
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
])
def test_edge_settings_that_work_are_accepted(changes):
  assert Config(**changes).replace(**changes) == Config(**changes)
