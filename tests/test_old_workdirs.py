"""Workdirs written by older code load, score as they did, evaluate and resume: every family that
code had (FAMILIES; the later ones have no older workdirs), trained 1 of 2 epochs by the package as
it was at commit 89d5f49 (before its subpackages), taken from the repository's history and run in a
process of its own (tests/data/make_old_workdirs.py)."""

import csv
import os
import shutil
import subprocess
import sys

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
OLD_COMMIT = "89d5f49"
FAMILIES = ("anogan", "egbad", "ae", "vae")


@pytest.fixture(scope="module")
def old_workdirs(tmp_path_factory):
  """A folder of the old code's workdirs (one per family, with expected.npz: its scores)."""
  if subprocess.run(["git", "-C", ROOT, "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"]).returncode:
    pytest.skip(f"needs the repository's history (commit {OLD_COMMIT}); use a full clone")
  root = tmp_path_factory.mktemp("old")
  source, out = root / "src", root / "workdirs"
  source.mkdir()
  archive = subprocess.run(["git", "-C", ROOT, "archive", OLD_COMMIT, "anogan_tf"], capture_output=True, check=True)
  subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
  env = {**os.environ, "PYTHONPATH": str(source), "TF_CPP_MIN_LOG_LEVEL": "3"}
  done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "data", "make_old_workdirs.py"), str(out)],
                        cwd=str(source), env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip().splitlines()[0] == os.path.join(str(source), "anogan_tf", "__init__.py")  # the old code
  return str(out)


@pytest.fixture
def old_workdir(request, tmp_path, mnist_dir, old_workdirs):
  workdir = str(tmp_path / request.param)
  shutil.copytree(os.path.join(old_workdirs, request.param), workdir)
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
