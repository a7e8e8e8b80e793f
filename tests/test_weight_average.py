"""--ema_momentum: a run exports the exponential moving average of its weights over the last
learning-rate phase (Keras' Adam use_ema), checkpoints keep the last weights and the average's
state; a family whose trainer kept no average would refuse the flag before writing anything. Every
family of the registry, tiny networks (test_families' settings)."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny_family
from conftest import ROOT
from test_families import FAMILIES, blobs_data, examples, tiny_config

from anogan_tf import Config, models, train_lib
from anogan_tf.data import OneClassData
from anogan_tf.engine import checkpoints, driver
from anogan_tf.errors import AnoganError

sys.path.insert(0, os.path.join(ROOT, "experiments"))
import last_weights  # noqa: E402

MOMENTUM = 0.5  # far from 0 and 1: the average differs from the last weights and from the first


def trained_weights(networks):
  return [w.numpy() for name in sorted(networks) for w in networks[name].trainable_weights]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_exported_weights_are_the_average_over_the_last_phase(name):
  # One optimizer step per network and batch (anogan's --g_steps=2 would update G's average twice per batch).
  config = tiny_config(name, ema_momentum=MOMENTUM, lr_decay_epoch=1, epochs=2, g_steps=1)
  family = models.family(name)
  networks = family.build_networks(config)
  trainer = family.make_trainer(config, networks)
  assert trainer.averages_weights

  # Steps by hand: two in phase 0 (not in the average), three in phase 1, each phase-1 step's weights kept.
  x = tf.constant(examples(config, config.batch_size))
  rng = np.random.default_rng(0)
  for _ in range(2):  # eagerly: five steps cost less than tracing them
    trainer.train_step(x, tf.constant(family.noise(rng, config.batch_size, config)), 0)
  trajectory = []
  for _ in range(3):
    trainer.train_step(x, tf.constant(family.noise(rng, config.batch_size, config)), 1)
    trajectory.append(trained_weights(networks))
  average = trajectory[0]  # Keras' first step sets the average to the weights
  for weights in trajectory[1:]:
    average = [np.float32(MOMENTUM) * a + np.float32(1 - MOMENTUM) * w for a, w in zip(average, weights)]
  last = trajectory[-1]
  trainer.finalize()
  final = trained_weights(networks)
  # The same float32 arithmetic as Keras', in another order of rounding: equal to a few ulps.
  for got, want in zip(final, average):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(f, w, rtol=1e-3, atol=1e-5) for f, w in zip(final, last))  # not the last weights


def test_a_run_exports_the_average_and_its_checkpoint_keeps_the_last_weights_and_the_average(tmp_path):
  """Through the driver (train_lib.train), the registry's first family: the exported networks
  are what finalize() makes of the last checkpoint, which holds the last weights (a resume goes on
  from them) and the average's state (restored, it gives the same export)."""
  name = FAMILIES[0]
  config = tiny_config(name, ema_momentum=MOMENTUM, lr_decay_epoch=1, epochs=2)
  workdir = str(tmp_path / "w")
  train_lib.train(config, workdir, data=blobs_data(config), progress=False)
  run = driver.Driver(config)
  assert checkpoints.restore_checkpoint(run, os.path.join(workdir, "checkpoints")) == 2
  checkpointed = {net: [w.numpy() for w in run.networks[net].weights] for net in run.family.NETWORKS}
  run.trainer.finalize()
  differs = False
  for net in run.family.NETWORKS:
    exported = [w.numpy() for w in keras.models.load_model(os.path.join(workdir, f"{net}.keras")).weights]
    finalized = [w.numpy() for w in run.networks[net].weights]
    assert len(exported) == len(finalized) > 0
    for e, f, c in zip(exported, finalized, checkpointed[net]):
      np.testing.assert_array_equal(e, f, err_msg=net)
      differs = differs or not np.array_equal(e, c)
  assert differs  # the checkpoint has the last weights, not the exported average

  # experiments/last_weights.py: those last weights as a workdir of their own, for a paired comparison.
  out = str(tmp_path / "last")
  last_weights.write_last_weights(workdir, out)
  for net in run.family.NETWORKS:
    written = [w.numpy() for w in keras.models.load_model(os.path.join(out, f"{net}.keras")).weights]
    for w, c in zip(written, checkpointed[net]):
      np.testing.assert_array_equal(w, c, err_msg=net)
  assert sorted(os.listdir(out)) == sorted([f"{net}.keras" for net in run.family.NETWORKS] + ["flags.txt", "history.csv"])


def test_a_family_that_keeps_no_average_refuses_the_flag_before_writing_anything(tmp_path, monkeypatch):
  # tests/tiny_family.py: a family whose Trainer has no finalize of its own (as a new family may).
  monkeypatch.setitem(models.FAMILIES, "tiny_series", tiny_family.family("tiny_series", (12, 3)))
  config = Config(model="tiny_series", epochs=1, batch_size=16, map_batch_size=16, ema_momentum=MOMENTUM)
  x = np.zeros((16, 12, 3), np.float32)
  data = OneClassData(x_train=x, x_test=x[:4], y_test=np.arange(4) % 2, classes_test=np.zeros(4, int),
                      test_indices=np.arange(4))
  workdir = str(tmp_path / "w")
  with pytest.raises(AnoganError, match="^--ema_momentum=0.5: --model=tiny_series keeps no average of its weights; "
                                        "use --ema_momentum=0$"):
    train_lib.train(config, workdir, data=data, progress=False)
  assert not os.path.exists(workdir)
