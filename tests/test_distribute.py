"""--strategy (anogan_tf/engine/distribute.py): training and scoring split across two logical CPU devices,
and across two worker processes on this machine (multiworker, TF_CONFIG on 127.0.0.1).

The devices must be configured before TensorFlow initialises, and a library does not change
process-wide settings, so every run on two devices is a subprocess (`python -c` with
distribute.set_cpu_devices, or the CLI's --cpu_devices); one process runs every check on two
devices, the other test files' too (its start-up costs more than they do). Two logical CPUs on
this machine's cores check correctness, not speed.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from anogan_tf.config import Config
from anogan_tf.engine import distribute
from anogan_tf.errors import AnoganError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(train_examples=24, test_examples=12, g_dense_channels=4, g_filters=(4,), g_strides=(2, 2),
            d_filters=(4, 8), latent_dim=4, batch_size=8, map_steps=(3, 2), map_batch_size=8, epochs=1)


def run_python(code: str, env_extra=None, devices: int = 2, lines: int = 1, timeout: int = 300):
  """Runs `code` with `devices` logical CPUs; returns the JSON it prints on its last line (a list
  of the JSON of its last `lines` lines, if more than 1)."""
  prelude = f"from anogan_tf.engine import distribute; distribute.set_cpu_devices({devices})\n"
  env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
  env.pop("TF_CONFIG", None) if "TF_CONFIG" not in (env_extra or {}) else None
  done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  assert done.returncode == 0, done.stderr[-3000:]
  printed = [json.loads(line) for line in done.stdout.strip().splitlines()[-lines:]]
  return printed[0] if lines == 1 else printed


TRAIN_AND_SCORE = """
import json, numpy as np, tensorflow as tf
from anogan_tf import models, train_lib
from anogan_tf.engine import distribute
from anogan_tf.evaluation import threshold
from anogan_tf.config import Config
from anogan_tf.engine.workdir import load_networks
tiny, workdir = {tiny}, "{workdir}"
family = models.family(tiny.get("model", "anogan"))
x = np.random.default_rng(1).uniform(-1, 1, (11, 28, 28, 1)).astype(np.float32)

def scores(config):
  scorer, networks = distribute.make_scorer(family, config, lambda: load_networks(workdir, family, config))
  return dict(replicas=scorer.strategy.num_replicas_in_sync if hasattr(scorer, "strategy") else 1,
              score=scorer.score(x).score.tolist(), digests=threshold.weights_sha256(networks))

out = {{}}
for stage in {stages}:
  config = Config(**{{**tiny, "epochs": stage["epochs"], "strategy": stage["strategy"]}})
  out.setdefault("histories", []).append(train_lib.train(config, workdir, progress=False))
  for chunk in stage.get("score_chunks", ()):
    out[f"{{config.strategy}}_{{chunk}}"] = scores(config.replace(map_batch_size=chunk))
print(json.dumps(out))
"""


def train_and_score(workdir, stages, tiny=None, devices=2, env_extra=None):
  """Trains `workdir` in stages ({"epochs", "strategy", "score_chunks"}) in one process with
  `devices` logical CPUs (default runs on one of them); scores 11 images after a stage for each
  --map_batch_size in its score_chunks."""
  code = TRAIN_AND_SCORE.format(tiny=repr(tiny or TINY), workdir=workdir, stages=repr(stages))
  return run_python(code, env_extra, devices)


@pytest.fixture(scope="module")
def data_dir():
  """$ANOGAN_DATA_DIR (conftest sets it to ../shared/data when unset), which the subprocesses inherit."""
  path = os.environ.get("ANOGAN_DATA_DIR", "")
  if not os.path.isfile(os.path.join(path, "mnist.npz")):
    pytest.skip("needs mnist.npz in $ANOGAN_DATA_DIR (CI sets it to ../shared/data)")
  return path


# Two epochs of 3 batches on 2 replicas against one device, same initial weights and batches (see
# test_mirrored_step_equals_one_device_step); printed as the JSON of {strategy: losses, weights, replicas}.
STEP = """
import json, numpy as np, tensorflow as tf
from anogan_tf.config import Config
from anogan_tf.engine import distribute
from anogan_tf.engine.driver import Driver
config = Config(**{tiny}, g_batchnorm=False, g_dense_batchnorm=False, adam_epsilon=1.0)
x = np.random.default_rng(0).uniform(-1, 1, (24, 28, 28, 1)).astype(np.float32)
out = {{}}
for name in ("default", "mirrored"):
  tf.keras.utils.set_random_seed(0)
  driver = Driver(config, distribute.make_strategy(name))
  losses = [driver.train_epoch(tf.constant(x), e) for e in range(2)]
  weights = np.concatenate([w.numpy().ravel() for w in driver.networks["generator"].weights])
  replicas = driver.strategy.num_replicas_in_sync if driver.strategy else 1
  out[name] = dict(losses=losses, weights=weights.tolist(), replicas=replicas)
print(json.dumps(out))
"""


# Families of other examples under default and mirrored (test_clips.py's convlstm_ae on clips,
# test_example_shapes.py's series and clips), in the same process: {strategy: scores} per line, or
# {"error": the traceback} for the test to show.
OTHER_EXAMPLES = """
import os, sys, traceback
sys.path.insert(0, "tests")
import test_clips, test_example_shapes
for name, run in (("clips", test_clips.scores_by_strategy), ("shapes", test_example_shapes.scores_by_strategy)):
  try:
    done = run(os.path.join("{folder}", name))
  except Exception:
    done = {{"error": traceback.format_exc()[-3000:]}}
  print(json.dumps(done))
"""


# The process's first command: `python -m anogan_tf.train --cpu_devices=2` (its main) splits the
# CPU in two, then refuses a batch of 7 for its 2 replicas; what runs after it uses those devices.
# Its exit code and what it wrote to stderr, as a JSON line.
CPU_DEVICES_FLAG = """
import contextlib, io, json
from anogan_tf import train
err = io.StringIO()
with contextlib.redirect_stderr(err):
  try:
    code = train.main(["anogan_tf.train", *{argv}])
  except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "stderr": err.getvalue()}}))
"""


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory, data_dir):
  """What one process with two logical CPUs computes (one process for all, as TensorFlow fixes
  the devices at its start): (workdir, its stages' histories and scores, STEP's output,
  OTHER_EXAMPLES' outputs by name, (the workdir CPU_DEVICES_FLAG named, its output)). The devices
  come from CPU_DEVICES_FLAG's --cpu_devices=2. The workdir: an epoch under mirrored, resumed for a
  second under default (then scored on one device at chunks of 8 and 4 and on two replicas at 8),
  resumed for a third under mirrored."""
  root = tmp_path_factory.mktemp("distribute")
  workdir, refused = str(root / "run"), str(root / "refused")
  stages = [dict(epochs=1, strategy="mirrored"), dict(epochs=2, strategy="default", score_chunks=(8, 4)),
            dict(epochs=2, strategy="mirrored", score_chunks=(8,)), dict(epochs=3, strategy="mirrored")]
  argv = [f"--workdir={refused}", "--train_examples=16", "--epochs=1", "--strategy=mirrored", "--cpu_devices=2",
          "--batch_size=7"]
  code = (CPU_DEVICES_FLAG.format(argv=repr(argv))
          + TRAIN_AND_SCORE.format(tiny=repr(TINY), workdir=workdir, stages=repr(stages)) + STEP.format(tiny=repr(TINY))
          + OTHER_EXAMPLES.format(folder=str(root / "other")))
  cli, staged, step, clips, shapes = run_python(code, devices=1, lines=5, timeout=900)
  return workdir, staged, step, {"clips": clips, "shapes": shapes}, (refused, cli)


@pytest.fixture(scope="module")
def staged(two_devices):
  return two_devices[:2]


@pytest.mark.slow
def test_mirrored_trains_resumes_and_checkpoints_restore_under_default(staged):
  workdir, out = staged
  first, second, _, third = out["histories"]
  assert len(first) == 1 and all(np.isfinite(v) for v in first[0].values())
  # Resumed under the default strategy: the mirrored checkpoint restores (epoch 2 trains on it).
  assert [row["epoch"] for row in second] == [0, 1] and second[0] == first[0]
  # And back: a checkpoint written under default resumes under mirrored.
  assert [row["epoch"] for row in third] == [0, 1, 2] and third[:2] == second
  assert "ckpt-3.index" in os.listdir(os.path.join(workdir, "checkpoints"))


@pytest.mark.slow
def test_mirrored_mapping_scores_equal_one_device(staged):
  """The same trained workdir scored on one device and split across two. Each image's search runs
  on one replica from one device's z0, on a chunk of map_batch_size / 2 images: it equals one
  device's search at that chunk size to float rounding (1e-6). Against one device at the full
  chunk size the only difference is the kernels' summation order at another batch size, which the
  search's Adam steps amplify (README: up to 3% on the seed-000 GAN at chunks of 32 or fewer; 8
  digits at 64 and above); on this tiny network, 1e-5 relative."""
  _, out = staged
  two, one, one_half = out["mirrored_8"], out["default_8"], out["default_4"]
  assert two["replicas"] == 2 and one["replicas"] == 1 and len(two["score"]) == 11
  # The networks loaded on the replicas are the workdir's: a threshold's weight digests match.
  assert two["digests"] == one["digests"] and len(two["digests"]) == 2
  np.testing.assert_allclose(two["score"], one_half["score"], rtol=1e-6)
  np.testing.assert_allclose(two["score"], one["score"], rtol=1e-5)


@pytest.mark.slow
def test_mirrored_step_equals_one_device_step(two_devices):
  """Two epochs of 3 batches on 2 replicas (mean of the replicas' gradients) against one device:
  same initial weights, same batches. Without BatchNorm (--g_batchnorm=false), the per-replica
  statistics that make BN differ by design are out of the way, so only float summation order
  differs: losses and weights agree to 1e-4 relative. adam_epsilon=1 makes Adam's step depend on
  the gradient's scale (with 1e-8 it hardly does), so a sum of the replicas' gradients instead of
  their mean shows."""
  out = two_devices[2]
  assert out["mirrored"]["replicas"] == 2
  for one, two in zip(out["default"]["losses"], out["mirrored"]["losses"]):
    for key in one:
      assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
  np.testing.assert_allclose(out["mirrored"]["weights"], out["default"]["weights"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_convlstm_ae_trains_and_scores_on_two_devices_as_on_one(two_devices):
  """tests/test_clips.py's convlstm_ae on clips, --strategy=mirrored over two logical CPUs: the same
  scores as one device."""
  out = two_devices[3]["clips"]
  assert "error" not in out, out.get("error")
  assert len(out["mirrored"]) == len(out["default"]) == 8
  np.testing.assert_allclose(out["mirrored"], out["default"], rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_a_family_of_other_examples_trains_and_scores_on_two_devices_as_on_one(two_devices):
  """tests/test_example_shapes.py's family on series and on clips, --strategy=mirrored over two
  logical CPUs: an epoch on the global batch split across the replicas, then every example scored
  once, as one device scores it."""
  out = two_devices[3]["shapes"]
  assert "error" not in out, out.get("error")
  for name in ("tiny_series", "tiny_clips"):
    assert len(out[name]["mirrored"]) == len(out[name]["default"]) == 24
    np.testing.assert_allclose(out[name]["mirrored"], out[name]["default"], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_multiworker_with_one_worker_trains_and_scores(tmp_path, data_dir):
  tf_config = json.dumps({"cluster": {"worker": ["localhost:23456"]}, "task": {"type": "worker", "index": 0}})
  out = train_and_score(str(tmp_path / "run"), [dict(epochs=1, strategy="multiworker", score_chunks=(8,))],
                        tiny={**TINY, "model": "ae"}, devices=1, env_extra={"TF_CONFIG": tf_config})
  assert len(out["histories"][0]) == 1 and out["multiworker_8"]["replicas"] == 1
  assert len(out["multiworker_8"]["score"]) == 11 and np.isfinite(out["multiworker_8"]["score"]).all()


# --- two worker processes on this machine: MultiWorkerMirroredStrategy over TF_CONFIG, one CPU device each

WORKERS_TIMEOUT = 240  # seconds for processes started together; a worker waiting on a dead peer is killed


def free_ports(n: int) -> list:
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


# A worker: runs each command of its list, [(module, argv)], in turn through the module's main(argv),
# as `python -m <module> <argv>` does, in one process (one MultiWorkerMirroredStrategy for them all);
# exits with the first failing command's exit code.
WORKER = """
import importlib, json, sys
for module, argv in json.loads(sys.argv[1]):
  code = importlib.import_module(module).main([module, *argv])
  if code:
    sys.exit(code)
"""


def run_workers(commands, folder) -> None:
  """Starts one process per list of `commands` at once as worker 0, 1, ... of one TF_CONFIG
  cluster on 127.0.0.1, one CPU device each; each runs its list's `python -m <args>` commands in
  turn (WORKER), with --strategy=multiworker. Waits for all; a failed worker or WORKERS_TIMEOUT
  kills the others (a worker whose peer is gone waits for it forever), then fails the test with
  the failure's stderr."""
  env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
  cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(commands))]}
  processes, logs, killed = [], [], set()
  try:
    for i, worker in enumerate(commands):
      tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
      logs.append(os.path.join(folder, f"worker{i}.stderr"))
      cases = json.dumps([(module, [*argv, "--strategy=multiworker"]) for module, *argv in worker])
      with open(logs[-1], "w") as stderr:
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER, cases], cwd=ROOT,
                                          env={**env, "TF_CONFIG": tf_config}, stdout=subprocess.DEVNULL,
                                          stderr=stderr))
    deadline = time.monotonic() + WORKERS_TIMEOUT
    while any(p.poll() is None for p in processes) and not any(p.poll() for p in processes):
      if time.monotonic() > deadline:
        pytest.fail(f"{commands} did not finish within {WORKERS_TIMEOUT} s; killed")
      time.sleep(0.2)
  finally:
    for i, p in enumerate(processes):
      if p.poll() is None:
        p.kill()
        killed.add(i)
      p.wait()
  failed = [i for i, p in enumerate(processes) if p.returncode and i not in killed]  # the cause, not its peers
  if failed:
    with open(logs[failed[0]]) as f:
      pytest.fail(f"worker {failed[0]} ({commands[failed[0]]}) exited with {processes[failed[0]].returncode}; "
                  f"killed its peers {sorted(killed)}:\n{f.read()[-3000:]}")


def read_scores(out_dir):
  with open(os.path.join(out_dir, "scores.csv")) as f:
    rows = list(csv.DictReader(f))
  return [int(row["index"]) for row in rows], np.array([float(row["score"]) for row in rows])


# Without the generator's BatchNorm (per-replica statistics by design) and with adam_epsilon=1 (a sum
# of the replicas' gradients instead of their mean shows), as in test_mirrored_step_equals_one_device_step.
MULTIWORKER_TRAINING = {**TINY, "g_batchnorm": False, "g_dense_batchnorm": False, "adam_epsilon": 1.0}


@pytest.fixture(scope="module")
def two_workers(staged, tmp_path_factory):
  """(folder, the staged workdir): two worker processes of one cluster, each running, in turn,
  train --strategy=multiworker on MULTIWORKER_TRAINING into folder/worker<i>, then evaluate
  --strategy=multiworker of the staged workdir into --eval_dir=folder/eval<i>."""
  from anogan_tf.config import flag_text
  folder = tmp_path_factory.mktemp("two_workers")
  workdir, _ = staged
  settings = [f"--{k}={flag_text(v)}" for k, v in MULTIWORKER_TRAINING.items()]
  run_workers([[["anogan_tf.train", f"--workdir={folder / f'worker{i}'}", *settings],
                ["anogan_tf.evaluate", f"--workdir={workdir}", f"--eval_dir={folder / f'eval{i}'}"]]
               for i in range(2)], folder)
  return folder, workdir


@pytest.mark.slow
def test_two_worker_processes_each_score_every_test_image_as_one_device_does(two_workers, tmp_path):
  """evaluate --strategy=multiworker in two processes on the staged workdir (12 test images,
  --map_batch_size=8: each chunk of 8 split into 4 per worker). Each worker writes its own
  --eval_dir, holding every image once. One device scores at --map_batch_size=4, the chunk each
  replica runs: the same kernels on the same shapes per image and the same z0, so only thread
  scheduling can differ; the search's steps amplify that little, well within 1e-5 relative."""
  from anogan_tf import evaluate_lib
  from anogan_tf.cli.flags import workdir_config
  folder, workdir = two_workers
  one_device = workdir_config(workdir).replace(strategy="default", map_batch_size=4)
  evaluate_lib.evaluate(one_device, workdir, progress=False, out_dir=str(tmp_path / "one"))
  one_index, one_score = read_scores(tmp_path / "one")
  assert len(one_index) == TINY["test_examples"] == len(set(one_index))
  for worker in ("eval0", "eval1"):
    index, score = read_scores(folder / worker)
    assert index == one_index  # every test image exactly once, in the same order
    np.testing.assert_allclose(score, one_score, rtol=1e-5)
    with open(folder / worker / "metrics.json") as f:
      metrics = json.load(f)
    assert metrics["strategy"] == "multiworker" and metrics["test_examples"] == TINY["test_examples"]


@pytest.mark.slow
def test_two_worker_processes_train_the_weights_one_device_trains(two_workers, tmp_path, data_dir):
  """train --strategy=multiworker for an epoch of 3 global batches of 8 in two processes (each its
  own workdir; 4 images per worker and step) against one device at the same global batch
  (MULTIWORKER_TRAINING): both workers apply the same all-reduced gradients, and one device
  differs only in float summation order, 1e-4 relative."""
  import keras

  from anogan_tf import train_lib
  folder, _ = two_workers
  workdirs = [folder / "worker0", folder / "worker1", tmp_path / "one"]
  train_lib.train(Config(**MULTIWORKER_TRAINING), str(workdirs[2]), progress=False)

  def weights(workdir):
    return {name: [w.numpy() for w in keras.models.load_model(workdir / f"{name}.keras").weights]
            for name in ("generator", "discriminator")}

  def losses(workdir):
    with open(workdir / "history.csv") as f:
      return [{k: float(v) for k, v in row.items() if k not in ("epoch", "seconds")} for row in csv.DictReader(f)]

  one, one_losses = weights(workdirs[2]), losses(workdirs[2])
  assert len(one_losses) == 1
  for workdir in workdirs[:2]:
    two = weights(workdir)
    for name in one:
      assert len(two[name]) == len(one[name])
      for a, b in zip(two[name], one[name]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{workdir.name}: {name}")
    for a, b in zip(losses(workdir), one_losses):
      assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
  # Both workers hold the same replicated variables: the all-reduce gives each the same update.
  first, second = weights(workdirs[0]), weights(workdirs[1])
  for name in first:
    for a, b in zip(first[name], second[name]):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("text, problem", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{cluster:", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG has no "cluster" object'),
    ('{"cluster": {"worker": "host1:1"}, "task": {"type": "worker", "index": 0}}', 'is not a list of "host:port"'),
    ('{"cluster": {"worker": ["host1:1"]}, "task": {"type": "chief", "index": 0}}', 'must name a "type"'),
    ('{"cluster": {"worker": ["host1:1"]}, "task": {"type": "worker", "index": 1}}', "task index 1 is not one of 0..0"),
])
def test_bad_tf_config_is_one_line(text, problem):
  with pytest.raises(AnoganError) as error:
    distribute.check_tf_config(text)
  message = str(error.value)
  assert problem in message and "TF_CONFIG=" in message and "\n" not in message


@pytest.mark.slow
def test_cli_errors_are_one_line_and_touch_nothing(two_devices, tmp_path, data_dir, monkeypatch):
  # --cpu_devices fixes the process's devices: that case is two_devices' first command (its
  # process's other runs check that it made two replicas); the other through the command's main here.
  monkeypatch.delenv("TF_CONFIG", raising=False)
  workdir = tmp_path / "run"
  from conftest import run_command
  here = run_command("train", f"--workdir={workdir}", "--train_examples=16", "--epochs=1", "--strategy=multiworker")
  refused, cli = two_devices[4]
  for (code, stderr), problem, folder in (((here.returncode, here.stderr), "needs the TF_CONFIG", workdir),
                                          ((cli["code"], cli["stderr"]), "cannot be split evenly across 2 replicas",
                                           refused)):
    lines = stderr.strip().splitlines()
    assert code == 2, stderr[-2000:]
    assert problem in lines[-1] and lines[-1].startswith("error: "), lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert not os.path.exists(folder)


def test_unknown_strategy_and_encoder_stage_are_refused():
  with pytest.raises(AnoganError, match="unknown --strategy 'cluster'; use one of default, mirrored, multiworker"):
    Config(strategy="cluster")

  class Two:
    num_replicas_in_sync = 2
  with pytest.raises(AnoganError, match="--encoder_epochs trains on one device, not with --strategy=mirrored; .*"
                                        "--strategy=default --encoder_epochs=N"):
    distribute.check_training(Config(batch_size=8, encoder_epochs=1, strategy="mirrored"), 16, Two())


def test_batch_split_messages():
  class Two:
    num_replicas_in_sync = 2
  distribute.check_batch(8, Two())
  distribute.check_batch(7, None)
  with pytest.raises(AnoganError, match=r"--batch_size=7 cannot be split evenly across 2 replicas; .*--batch_size=6"):
    distribute.check_batch(7, Two())
  with pytest.raises(AnoganError, match="last batch of each epoch has 1 training image"):
    distribute.check_training(Config(batch_size=8), 17, Two())
  distribute.check_training(Config(batch_size=8), 18, Two())


def test_default_strategy_is_no_strategy():
  assert distribute.make_strategy("default") is None
  with pytest.raises(AnoganError, match="unknown --strategy=nope; use one of default, mirrored, multiworker"):
    distribute.make_strategy("nope")
