"""Workdirs written by older code load, score as they did, evaluate and resume: every family that
code had (FAMILIES; the later ones have no older workdirs), trained 1 of 2 epochs by the package as
it was at commit 89d5f49 (before its subpackages) and scored on 8 MNIST test images. They are
committed (tests/data/old_workdirs, 1.5 MB): written once by tests/data/make_old_workdirs.py with
that commit's code (its docstring has the command), so that the suite does not run the old code
each time. The scores they hold come from the machine that wrote them: the newer code reproduces
them up to another machine's rounding."""

import csv
import os
import shutil

import keras
import numpy as np
import pytest

from anogan_tf import models
from anogan_tf.cli.flags import workdir_config
from anogan_tf.data import load_one_class
from anogan_tf.engine.workdir import load_scorer
from anogan_tf.evaluate_lib import evaluate
from anogan_tf.train_lib import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ("anogan", "egbad", "ae", "vae")


# The committed workdirs (see the docstring above).
OLD_WORKDIRS = os.path.join(ROOT, "tests", "data", "old_workdirs")


@pytest.fixture
def old_workdir(request, tmp_path, mnist_dir):
  workdir = str(tmp_path / request.param)
  shutil.copytree(os.path.join(OLD_WORKDIRS, request.param), workdir)
  config = workdir_config(workdir).replace(data_dir=mnist_dir)
  return request.param, config, workdir


@pytest.mark.slow
@pytest.mark.parametrize("old_workdir", FAMILIES, indirect=True)
def test_an_old_workdir_scores_as_before_then_evaluates_and_resumes(old_workdir):
  name, config, workdir = old_workdir
  family = models.family(name)
  for network in family.NETWORKS + getattr(family, "OPTIONAL_NETWORKS", ()):
    keras.models.load_model(os.path.join(workdir, f"{network}.keras"))  # no custom_objects
  # The scorer make_old_workdirs.py ran, on the same 8 test images: the same numbers, up to the
  # rounding of another machine's kernels (a 2-step search at most carries it a little further).
  scored = config.replace(initial_z="encoder", map_steps=(2,)) if name == "anogan" else config
  scorer, _ = load_scorer(scored, workdir, family)
  expected = np.load(os.path.join(workdir, "expected.npz"))
  result = scorer.score(load_one_class(config).x_test)
  np.testing.assert_allclose(result.score, expected["score"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(result.reconstruction, expected["reconstruction"], atol=1e-4)
  metrics = evaluate(config, workdir, progress=False)
  assert metrics["n_normal"] + metrics["n_anomalous"] == 8 and metrics["threshold"] is not None
  history = train(config.replace(epochs=2), workdir, progress=False)
  assert [row["epoch"] for row in history] == [0, 1]  # epoch 0 from the old run, epoch 1 resumed
  with open(os.path.join(workdir, "history.csv"), newline="") as f:
    assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
