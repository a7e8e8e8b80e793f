"""Export (`python -m anogan_tf.export`): a SavedModel that scores images with no anogan_tf.

Networks built and saved as a workdir (flags.txt and .keras files, no training: the export reads
only those): seed 000's for AnoGAN (at that size, a graph with an unknown batch size rounds the
search's gradient differently from the library's; tinier ones hide that), tiny ones for the rest. All
exports but the default one run through the command line's main in the test process
(conftest.run_cases), the default one through `python -m anogan_tf.export`; one fresh
interpreter, where `import anogan_tf` fails, loads every SavedModel and runs its signatures. The
tests compare what it computed with the in-library scorers on the same images and starting z.
"""

import hashlib
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_cases, synthetic_images

from anogan_tf import AnoganError, Config, export_lib, models, score_lib
from anogan_tf.engine.workdir import load_networks
from anogan_tf.evaluation import threshold as threshold_lib
from anogan_tf.models import anogan
from anogan_tf.models.anogan.mapper import adam_update

TINY = dict(latent_dim=8, g_dense_channels=8, g_filters=(8, 4), d_filters=(4, 8), e_filters=(4, 8),
            map_steps=(3, 2), map_lrs=(0.1, 0.01), map_batch_size=16, seed=5)
# Seed 000's networks and learning rates. At this size and 16 images a chunk, a graph of unknown
# batch size sums the search's gradient in another order than the library's (not at 8 or fewer).
GAN = dict(map_steps=(10, 10), map_batch_size=16, seed=5)
N = 19  # images per call: a chunk of 16 (--map_batch_size) and one of 3 padded to 16, in the library as in the export
# The anogan workdir (with a warm-start encoder) exported four ways, and each other family once:
# name -> (workdir family, the export's command-line overrides)
EXPORTS = {
    "anogan": ("anogan", []),  # threshold.json, written below
    "anogan_warm": ("anogan", ["--initial_z=encoder", "--map_steps=2,4", "--map_lrs=0.05,0.02", "--lam=0.1",
                               "--feature_layer=flatten", "--threshold=0.3"]),
    "anogan_at_e": ("anogan", ["--initial_z=encoder", "--map_steps=0", "--threshold=0.3"]),
    "anogan_restarts": ("anogan", ["--map_restarts=2", "--map_steps=3,2", "--threshold=0.3"]),
    "egbad": ("egbad", ["--threshold=0.3"]),
    "ae": ("ae", ["--threshold=100"]),
    "vae": ("vae", ["--threshold=100"]),
}
FROM_Z = ("anogan",)  # a search from a random start: its start is an input


def digests(folder):
  """{relative path: sha256} of every file under folder."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def make_workdir(path, config, encoder=False):
  """A workdir as training leaves it, as far as export reads it: flags.txt and the networks."""
  os.makedirs(path)
  keras.utils.set_random_seed(0)
  networks = models.family(config.model).build_networks(config)
  if encoder:
    networks[anogan.ENCODER] = anogan.build_encoder(config)
  for name, network in networks.items():
    network.save(os.path.join(path, f"{name}.keras"))
  with open(os.path.join(path, "flags.txt"), "w") as f:
    f.write(config.to_flagfile())
  return path


def export_config(name, workdirs):
  """The Config the export of `name` scores with: the workdir's, with the overrides."""
  from anogan_tf.cli import flags as anogan_flags
  from anogan_tf.config import evaluation_config
  family, overrides = EXPORTS[name]
  base = anogan_flags.workdir_config(workdirs[family])
  return evaluation_config(base, anogan_flags.config_from_args([o for o in overrides if not o.startswith("--threshold")],
                                                               base))


def library_score(name, workdirs, images, **kwargs):
  """The in-library scorer's ScoreResult for the export `name` (evaluate's and score's scorer)."""
  config = export_config(name, workdirs)
  family = models.family(config.model)
  return family.make_scorer(config, load_networks(workdirs[config.model], family, config)).score(images, **kwargs)


def evaluate_start(config, n):
  """Evaluate's starting z for its first n images, as README "Export" computes it without anogan_tf."""
  rng = np.random.default_rng(config.seed)
  if config.z_init == "normal":
    return (rng.standard_normal((n, config.latent_dim)) * config.z_init_std).astype(np.float32)
  return rng.uniform(-1, 1, (n, config.latent_dim)).astype(np.float32)


# Runs in a fresh interpreter that cannot import anogan_tf: loads every SavedModel and calls it.
LOADER = r'''
import json, sys
sys.modules["anogan_tf"] = None  # as where anogan_tf is not installed
try:
  import anogan_tf
  sys.exit("anogan_tf was importable")
except ImportError:
  pass
import numpy as np
import tensorflow as tf

root, inputs_path, out_path, names = sys.argv[1:]
inputs = np.load(inputs_path)
arrays, report = {}, {}


def call(name, tag, signature, **kwargs):
  out = loaded.signatures[signature](**{k: tf.constant(v) for k, v in kwargs.items()})
  for key, value in out.items():
    arrays[f"{name}/{tag}/{key}"] = value.numpy()
  return out


def error(signature, **kwargs):
  try:
    loaded.signatures[signature](**{k: tf.constant(v) for k, v in kwargs.items()})
  except tf.errors.InvalidArgumentError as e:
    return [line for line in str(e).splitlines() if line.startswith("assertion failed")] or [str(e)]
  return None


for name in json.loads(names):
  loaded = tf.saved_model.load(f"{root}/{name}")
  images, pixels = inputs["images"], inputs["pixels"]
  report[name] = {"signatures": sorted(loaded.signatures), "metadata": json.loads(loaded.metadata.numpy()),
                  "threshold": float(loaded.threshold.numpy())}
  first = call(name, "float", "serving_default", images=images)
  call(name, "again", "serving_default", images=images)
  call(name, "uint8", "serving_uint8", images=pixels)
  call(name, "subset", "serving_default", images=images[[4, 1]])
  if f"{name}/z0" in inputs:
    call(name, "from_z", "serving_from_z", images=images, initial_z=inputs[f"{name}/z0"])
  loaded.threshold.assign(first["score"][2])  # a threshold equal to a score: not above it
  call(name, "at_threshold", "serving_default", images=images)
  report[name]["errors"] = {
      "nan": error("serving_default", images=np.where(np.arange(784).reshape(28, 28, 1) == 5, np.nan, images).astype(np.float32)),
      "range": error("serving_default", images=images * 3),
      "size": error("serving_default", images=np.zeros((2, 32, 28, 1), np.float32)),
      "rank": error("serving_default", images=images[..., 0]),
      "rank_uint8": error("serving_uint8", images=pixels[..., 0]),
      "empty": error("serving_default", images=images[:0]),
  }
  if f"{name}/z0" in inputs:
    z0 = inputs[f"{name}/z0"]
    report[name]["errors"].update(z_rows=error("serving_from_z", images=images, initial_z=z0[:2]),
                                  z_width=error("serving_from_z", images=images, initial_z=z0[:, :3]),
                                  z_nan=error("serving_from_z", images=images, initial_z=z0 * np.nan))
np.savez(out_path, **arrays)
json.dump(report, open(out_path + ".json", "w"))
'''


def error_cases(root, workdirs, settings):
  """Command lines that must fail: {case: (argv, part of the error line)}, with the folders they need."""
  gan = workdirs["anogan"]
  no_encoder = make_workdir(str(root / "no_encoder"), Config(**TINY))
  incomplete = make_workdir(str(root / "incomplete"), Config(**TINY))
  os.remove(os.path.join(incomplete, "discriminator.keras"))
  (root / "a_file").write_text("x\n")
  (root / "not_a_saved_model").mkdir()
  (root / "not_a_saved_model" / "notes.txt").write_text("mine\n")
  (root / "existing" / "variables").mkdir(parents=True)  # what a SavedModel folder holds
  (root / "existing" / "saved_model.pb").write_bytes(b"an earlier export")
  mismatched = make_workdir(str(root / "mismatched"), Config(**GAN))
  (root / "mismatched" / "threshold.json").write_text(json.dumps(
      threshold_lib.make_record(Config(**GAN), [0.1, 0.2, 0.3], {**settings, "lam": 0.1}, {})))
  damaged = make_workdir(str(root / "damaged"), Config(**TINY))
  (root / "damaged" / "threshold.json").write_text('{"threshold": ')
  new = str(root / "new")
  return {
      "missing workdir": ([f"--workdir={root / 'nothing'}", f"--output={new}"], "holds no flags.txt"),
      "no workdir flag": ([f"--output={new}"], "--workdir is required"),
      "no output flag": ([f"--workdir={gan}"], "--output is required"),
      "incomplete": ([f"--workdir={incomplete}", f"--output={new}", "--threshold=1"],
                     "discriminator.keras is missing; train first"),
      "exists": ([f"--workdir={gan}", f"--output={root / 'existing'}"], "holds a SavedModel already; pass --overwrite"),
      "not a saved model": ([f"--workdir={gan}", f"--output={root / 'not_a_saved_model'}", "--overwrite"],
                            "exists and is not a SavedModel"),
      "file": ([f"--workdir={gan}", f"--output={root / 'a_file'}"], "exists and is not a SavedModel"),
      "under a file": ([f"--workdir={gan}", f"--output={root / 'a_file' / 'x'}"], "a_file is a file, not a folder"),
      "no threshold": ([f"--workdir={no_encoder}", f"--output={new}"],
                       "no threshold: " + no_encoder + " was trained with --val_fraction=0, so nothing decides "
                       "which scores are anomalous; train with --val_fraction=0.1 to store one; or pass --threshold=T"),
      "mismatch": ([f"--workdir={mismatched}", f"--output={new}"],
                   "does not apply: it was computed with --lam=0.1 and these scores with --lam=0.7; score with "
                   "the workdir's settings (leave --lam out)"),
      "damaged": ([f"--workdir={damaged}", f"--output={new}"], "threshold.json is damaged (JSONDecodeError)"),
      "nan threshold": ([f"--workdir={no_encoder}", f"--output={new}", "--threshold=nan"],
                        "--threshold=nan is not a finite number"),
      "restarts from E(x)": ([f"--workdir={gan}", f"--output={new}", "--threshold=1", "--map_restarts=3",
                              "--initial_z=encoder"], "use --map_restarts=1 with --initial_z=encoder"),
      "unknown flag": ([f"--workdir={gan}", f"--output={new}", "--bogus=1"], "Unknown command line flag 'bogus'"),
      "no encoder": ([f"--workdir={no_encoder}", f"--output={new}", "--initial_z=encoder", "--threshold=1"],
                     "encoder.keras is missing; --initial_z=encoder starts the search"),
      "training flag": ([f"--workdir={gan}", f"--output={new}", "--g_filters=4,4", "--threshold=1"],
                        "--g_filters=4,4 does not match the workdir"),
  }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """Workdirs, the exports and the failing command lines (through the CLI's main in this process;
  the default export through `python -m anogan_tf.export`, at the same time), and what a fresh
  interpreter without anogan_tf computed with the SavedModels; and the in-library scorer's result for
  the default export's images (the threshold's scores)."""
  root = tmp_path_factory.mktemp("export")
  workdirs = {"anogan": make_workdir(str(root / "anogan"), Config(**GAN, threshold_percentile=50.0), encoder=True)}
  for family in ("egbad", "ae", "vae"):
    workdirs[family] = make_workdir(str(root / family), Config(model=family, **TINY))
  pixels = np.round((synthetic_images(N - 3, seed=3) + 1) * 127.5).astype(np.uint8)
  pixels = np.concatenate([pixels, np.random.default_rng(4).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)])
  images = pixels.astype(np.float32) / 127.5 - 1.0  # as anogan_tf reads pixels
  # threshold.json as training with --val_fraction writes it, from these images' scores at the
  # workdir's --threshold_percentile=50 (the median), with these settings and weights
  config = export_config("anogan", workdirs)
  networks = load_networks(workdirs["anogan"], anogan, config)
  settings = models.family("anogan").make_scorer(config, networks).settings()
  library = library_score("anogan", workdirs, images)  # evaluate's search, from the start it draws
  record = threshold_lib.make_record(config, library.score,
                                     {**settings, "map_batch_size": 1024}, threshold_lib.weights_sha256(networks))
  threshold = record["threshold"]
  with open(os.path.join(workdirs["anogan"], export_lib.THRESHOLD_FILE), "w") as f:
    json.dump(record, f)
  workdir_digests = {family: digests(path) for family, path in workdirs.items()}
  errors = error_cases(root / "errors", workdirs, settings)
  errors_before = digests(root / "errors")

  saved = root / "saved"
  exports = [name for name in EXPORTS if name != "anogan"]
  cases = [[f"--workdir={workdirs[EXPORTS[name][0]]}", f"--output={saved / name}", *EXPORTS[name][1]] for name in exports]
  cases += [argv for argv, _ in errors.values()]
  real = subprocess.Popen([sys.executable, "-m", "anogan_tf.export", f"--workdir={workdirs['anogan']}",
                           f"--output={saved / 'anogan'}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    results = run_cases("export", cases)
    out, err = real.communicate(timeout=600)
  finally:
    if real.poll() is None:
      real.kill()
      real.communicate()
  cli = subprocess.CompletedProcess(real.args, real.returncode, out, err)

  z0 = {name: evaluate_start(export_config(name, workdirs), N) for name in FROM_Z}
  np.savez(root / "inputs.npz", images=images, pixels=pixels, **{f"{name}/z0": z for name, z in z0.items()})
  loader = subprocess.run([sys.executable, "-c", LOADER, str(saved), str(root / "inputs.npz"), str(root / "outputs.npz"),
                           json.dumps(list(EXPORTS))], cwd=str(root), capture_output=True, text=True, timeout=600)
  assert loader.returncode == 0, loader.stderr[-3000:]
  arrays = np.load(root / "outputs.npz")
  outputs = {}
  for key in arrays.files:
    name, tag, output = key.split("/")
    outputs.setdefault(name, {}).setdefault(tag, {})[output] = arrays[key]
  return dict(root=root, workdirs=workdirs, images=images, pixels=pixels, z0=z0, threshold=threshold, cli=cli,
              exports=dict(zip(exports, results)), errors={case: (message, result) for (case, (_, message)), result
                                                          in zip(errors.items(), results[len(exports):])},
              errors_before=errors_before, outputs=outputs, workdir_digests=workdir_digests, saved=saved,
              report=json.load(open(str(root / "outputs.npz") + ".json")), library=library)


def assert_equal_result(out, result):
  """The SavedModel's outputs `out` equal the library's ScoreResult `result`, to the bit: the
  export runs the library's own graph (Scorer.score_tensors) on chunks of the library's static
  size, so the same kernels see the same numbers (even the padded last chunk's rows: rows are
  independent). A search would carry any other rounding through its Adam steps."""
  for key in ("score", "reconstruction", "residual_map"):
    np.testing.assert_array_equal(out[key], getattr(result, key), err_msg=key)
  assert {k for k in out if k.startswith("part_")} == {f"part_{k}" for k in result.parts}
  for key, value in result.parts.items():
    np.testing.assert_array_equal(out[f"part_{key}"], value, err_msg=key)
  for key, value in result.extras.items():
    np.testing.assert_array_equal(out[key], value, err_msg=key)


# --- the SavedModel, where anogan_tf cannot be imported

@pytest.mark.slow
def test_every_export_loads_and_runs_without_anogan_tf(exported):
  cli = exported["cli"]
  assert cli.returncode == 0, cli.stderr[-3000:]
  assert cli.stderr.strip() == "", cli.stderr  # the command prints only its own line, on stdout
  assert "exported anogan" in cli.stdout and "threshold.json" in cli.stdout, cli.stdout
  for name, result in exported["exports"].items():
    assert result["code"] == 0, (name, result["stderr"])
  for name in EXPORTS:
    report, float_out = exported["report"][name], exported["outputs"][name]["float"]
    from_z = name in FROM_Z
    assert report["signatures"] == sorted(["serving_default", "serving_uint8"] + ["serving_from_z"] * from_z), name
    assert report["metadata"]["chunk"] == 16, name
    assert {"score", "is_anomaly", "reconstruction", "residual_map", "z"} <= set(float_out), name
    assert float_out["score"].shape == float_out["is_anomaly"].shape == (N,)
    assert float_out["reconstruction"].shape == float_out["residual_map"].shape == (N, 28, 28, 1)
    assert report["metadata"]["model"] == EXPORTS[name][0]
    assert report["metadata"]["image_shape"] == [28, 28, 1]
  assert set(exported["outputs"]["anogan"]["float"]) == {
      "score", "is_anomaly", "reconstruction", "residual_map", "part_residual", "part_discrimination", "z",
      "initial_z", "trajectory"}
  assert exported["outputs"]["anogan"]["float"]["trajectory"].shape == (N, 20)


@pytest.mark.slow
def test_the_search_equals_the_latent_mapper_from_the_same_z(exported):
  """serving_from_z from evaluate's start (README's NumPy formula) equals the LatentMapper that
  evaluate runs, which draws that start itself."""
  workdirs, z0, outputs = exported["workdirs"], exported["z0"], exported["outputs"]
  config = export_config("anogan", workdirs)
  mapper = models.family("anogan").make_scorer(config, load_networks(workdirs["anogan"], anogan, config))
  np.testing.assert_array_equal(z0["anogan"], mapper.initial_z(N))  # the README formula is evaluate's start
  out = outputs["anogan"]["from_z"]
  np.testing.assert_array_equal(out["initial_z"], z0["anogan"])
  assert_equal_result(out, exported["library"])  # library_score("anogan", ...), which draws its own start


@pytest.mark.slow
def test_the_default_signature_starts_each_image_from_its_own_keyed_z(exported):
  """Without a start, z0 is drawn per image from --seed and its bytes, and every output of an
  image is the same, to the bit, in any call and whatever the other images of the call (nothing
  carries over between calls); the search from it is the mapper's."""
  outputs = exported["outputs"]["anogan"]
  first, again, subset = outputs["float"], outputs["again"], outputs["subset"]
  for key in first:
    np.testing.assert_array_equal(again[key], first[key], err_msg=key)
    np.testing.assert_array_equal(subset[key], first[key][[4, 1]], err_msg=key)
  z0 = first["initial_z"]
  assert len(np.unique(z0[:, 0])) == N and z0.min() >= -1 and z0.max() <= 1  # U(-1, 1), one draw per image
  assert_equal_result(first, library_score("anogan", exported["workdirs"], exported["images"], initial_z=z0))


def test_keyed_initial_z_follows_z_init_and_the_seed():
  from anogan_tf import Discriminator, Generator, LatentMapper
  g, d = Generator(latent_dim=50, dense_channels=4, filters=(4, 4)), Discriminator(filters=(4, 4))
  x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (200, 28, 28, 1)).astype(np.float32))
  normal = LatentMapper(g, d, z_init="normal", z_init_std=0.1, seed=3).keyed_initial_z(x).numpy()
  assert normal.shape == (200, 50) and abs(normal.std() - 0.1) < 0.003 and abs(normal.mean()) < 0.003
  uniform = LatentMapper(g, d, seed=3).keyed_initial_z(x).numpy()
  assert uniform.min() >= -1 and uniform.max() <= 1 and abs(uniform.std() - 3 ** -0.5) < 0.01
  other_seed = LatentMapper(g, d, seed=4).keyed_initial_z(x[:2]).numpy()
  assert np.abs(other_seed - uniform[:2]).min() > 0
  np.testing.assert_array_equal(LatentMapper(g, d, seed=3).keyed_initial_z(x[7:8]).numpy(), uniform[7:8])
  twice = LatentMapper(g, d, seed=3).keyed_initial_z(tf.concat([x[:1], x[:1]], 0)).numpy()
  np.testing.assert_array_equal(twice[0], twice[1])  # the same image, the same start


@pytest.mark.slow
@pytest.mark.parametrize("name", ["anogan_warm", "anogan_at_e", "egbad", "ae", "vae"])
def test_the_encoder_start_and_the_one_pass_families_equal_their_scorers(exported, name):
  out = exported["outputs"][name]["float"]
  assert_equal_result(out, library_score(name, exported["workdirs"], exported["images"]))
  if name == "anogan_warm":  # the search from E(x), with evaluate's overrides: both stages, lam, f
    assert out["trajectory"].shape == (N, 6)
    metadata = exported["report"][name]["metadata"]
    assert metadata["start"] == "encoder"
    assert [metadata["scorer"][k] for k in ("lam", "map_steps", "map_lrs", "feature_layer")] == [
        0.1, [2, 4], [0.05, 0.02], "flatten"]
    assert "map_batch_size" not in metadata["scorer"]  # the export's chunk is metadata["chunk"]
  if name == "anogan_at_e":
    assert "trajectory" not in out and exported["report"][name]["signatures"] == ["serving_default", "serving_uint8"]


@pytest.mark.slow
def test_restarts_keep_each_images_best_of_its_keyed_searches(exported):
  """--map_restarts=2: restart k searches from the keyed start of seed + k * RESTART_SEED_STRIDE,
  as the library's one-restart search from that start does, and each image keeps the outputs of
  its lowest score."""
  workdirs, images = exported["workdirs"], exported["images"]
  out, metadata = exported["outputs"]["anogan_restarts"]["float"], exported["report"]["anogan_restarts"]["metadata"]
  assert metadata["restarts"] == 2 and metadata["start"] == "keyed" and metadata["scorer"]["map_restarts"] == 2
  assert exported["report"]["anogan_restarts"]["signatures"] == ["serving_default", "serving_uint8"]
  config = export_config("anogan_restarts", workdirs)
  networks = load_networks(workdirs["anogan"], anogan, config)
  searches = []
  for k in range(2):
    one = config.replace(map_restarts=1, seed=config.seed + k * anogan.RESTART_SEED_STRIDE)
    mapper = anogan.make_scorer(one, networks)
    searches.append(mapper.score(images, initial_z=mapper.keyed_initial_z(tf.constant(images)).numpy()))
  best = np.argmin([r.score for r in searches], axis=0)
  assert 0 < best.sum() < N  # each restart wins on some images: the pick is tested
  rows = np.arange(N)
  expected = anogan.base.ScoreResult(
      score=np.stack([r.score for r in searches])[best, rows],
      reconstruction=np.stack([r.reconstruction for r in searches])[best, rows],
      residual_map=np.stack([r.residual_map for r in searches])[best, rows],
      parts={k: np.stack([r.parts[k] for r in searches])[best, rows] for k in searches[0].parts},
      extras={k: np.stack([r.extras[k] for r in searches])[best, rows] for k in searches[0].extras})
  assert_equal_result(out, expected)


@pytest.mark.slow
def test_uint8_pixels_and_float_images_give_the_same_outputs(exported):
  for name in EXPORTS:
    outputs = exported["outputs"][name]
    for key, value in outputs["float"].items():
      np.testing.assert_array_equal(outputs["uint8"][key], value, err_msg=f"{name} {key}")


@pytest.mark.slow
def test_is_anomaly_is_the_score_above_the_threshold(exported):
  assert exported["report"]["anogan"]["metadata"]["threshold_source"] == "threshold.json"
  assert exported["report"]["anogan"]["threshold"] == pytest.approx(exported["threshold"], rel=1e-7)
  for name in EXPORTS:
    report, outputs = exported["report"][name], exported["outputs"][name]
    threshold = np.float32(report["metadata"]["threshold"])
    out = outputs["float"]
    np.testing.assert_array_equal(out["is_anomaly"], out["score"] > threshold, err_msg=name)
    at = outputs["at_threshold"]  # the threshold set to image 2's score, after loading
    np.testing.assert_array_equal(at["is_anomaly"], at["score"] > at["score"][2], err_msg=name)
    assert not at["is_anomaly"][2]
  flags = exported["outputs"]["anogan"]["float"]["is_anomaly"]
  assert flags.any() and not flags.all()  # the median threshold splits them


@pytest.mark.slow
def test_bad_images_fail_the_call_with_a_message(exported):
  expected = {
      "nan": "images contain NaN or inf; remove or repair those images",
      "range": "image values are outside [-1, 1]; scale 0..255 pixels as x / 127.5 - 1",
      "size": "images need the shape (N, 28, 28, 1)", "rank": "images need the shape (N, 28, 28, 1)",
      "rank_uint8": "images need the shape (N, 28, 28, 1)", "empty": "no images to score; pass at least one image",
      "z_rows": "initial_z needs the shape (N, 50) for N images", "z_width": "initial_z needs the shape (N, 50)",
      "z_nan": "initial_z contains NaN or inf"}
  for name in EXPORTS:
    errors = exported["report"][name]["errors"]
    assert set(errors) == {k for k in expected if not k.startswith("z_") or name in FROM_Z}, name
    for case, message in errors.items():
      assert message and len(message) == 1 and message[0].startswith(f"assertion failed: [{expected[case]}"), (
          name, case, message)


# --- the command line: bad input is one line, exit 2, nothing touched

@pytest.mark.slow
def test_command_line_errors_are_one_line_and_touch_nothing(exported):
  for case, (message, result) in exported["errors"].items():
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == 2 and len(lines) == 1 and lines[0].startswith("error: "), (case, result)
    assert message in lines[0], (case, lines[0])
  assert digests(exported["root"] / "errors") == exported["errors_before"]
  assert not os.path.exists(exported["root"] / "errors" / "new")
  for family, path in exported["workdirs"].items():  # exporting reads a workdir, never writes it
    assert digests(path) == exported["workdir_digests"][family], family


@pytest.mark.slow
def test_a_failed_export_leaves_no_half_written_saved_model(exported, tmp_path, monkeypatch):
  workdir = exported["workdirs"]["ae"]
  config = export_config("ae", exported["workdirs"])
  output = tmp_path / "out" / "model"
  real_save = tf.saved_model.save
  before = None

  def save_then_fail(module, path, signatures=None):
    # written beside --output under a hidden name, while --output is absent or still the old one
    assert os.path.dirname(path) == str(output.parent) and os.path.basename(path).startswith(".model.tmp"), path
    assert not os.path.exists(output) or digests(output) == before
    real_save(module, path, signatures=signatures)  # all written, then the disk fills
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
  with pytest.raises(AnoganError, match=r"cannot write the SavedModel to .*model \(No space left on device\)"):
    export_lib.export(config, workdir, str(output), threshold=1.0)
  assert not os.path.exists(tmp_path / "out")  # not even the folder it made for it
  monkeypatch.setattr(tf.saved_model, "save", real_save)
  first = export_lib.export(config, workdir, str(output), threshold=1.0)
  before = digests(output)
  monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
  with pytest.raises(AnoganError, match="No space left on device"):
    export_lib.export(config, workdir, str(output), threshold=2.0, overwrite=True)
  assert digests(output) == before and os.listdir(tmp_path / "out") == ["model"]  # the old one, no leftovers
  monkeypatch.setattr(tf.saved_model, "save", real_save)
  second = export_lib.export(config, workdir, str(output), threshold=2.0, overwrite=True)
  assert (first["threshold"], second["threshold"]) == (1.0, 2.0)
  assert os.listdir(tmp_path / "out") == ["model"]
  assert float(tf.saved_model.load(str(output)).threshold.numpy()) == 2.0


@pytest.mark.slow
def test_an_unwritable_output_is_refused_before_any_work(exported, tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")

  monkeypatch.setattr(export_lib.tempfile, "TemporaryFile", refuse)  # as a read-only folder does (root writes anywhere)
  with pytest.raises(AnoganError, match=r"cannot write to .* \(Permission denied\); choose a writable --output"):
    export_lib.export(export_config("ae", exported["workdirs"]), exported["workdirs"]["ae"], str(tmp_path / "x" / "m"),
                      threshold=1.0)
  assert os.listdir(tmp_path) == []


# --- the pieces

def test_resolve_threshold(tmp_path):
  config, workdir = Config(val_fraction=0.1), str(tmp_path)
  settings = {"lam": 0.7, "map_steps": [50, 100], "map_batch_size": 256}
  resolve = lambda config, given=None: export_lib.resolve_threshold(config, workdir, settings, {}, given)  # noqa: E731
  with pytest.raises(AnoganError, match=r"threshold.json is missing .*; or pass --threshold=T"):
    resolve(config)
  with pytest.raises(AnoganError, match=r"--val_fraction=0, so nothing decides .*; or pass --threshold=T"):
    resolve(Config())
  assert resolve(config, 0.5) == (0.5, "--threshold", None)
  with pytest.raises(AnoganError, match="--threshold=nan is not a finite number"):
    resolve(config, float("nan"))
  path = tmp_path / "threshold.json"
  record = threshold_lib.make_record(config, [0.1, 0.2, 0.3, 0.4], {**settings, "map_batch_size": 1024}, {})
  path.write_text(json.dumps(record))
  assert resolve(config) == (record["threshold"], "threshold.json", 99)  # another batch size: scores comparable
  assert resolve(config.replace(threshold_percentile=50)) == (threshold_lib.percentile_of(record["val_scores"], 50),
                                                             "threshold.json", 50)
  path.write_text(json.dumps({**record, "scorer": {**settings, "map_steps": [50]}}))
  with pytest.raises(AnoganError, match=r"computed with --map_steps=50 and these scores with --map_steps=50,100"):
    resolve(config)
  assert resolve(config, 0.75) == (0.75, "--threshold", None)  # --threshold wins
  path.write_text(json.dumps({**record, "scorer": {"lam": 0.7}}))  # a setting the record lacks
  with pytest.raises(AnoganError, match=r"computed with --map_steps=\(none\) and these scores with --map_steps=50,100"):
    resolve(config)
  for text in ('{"scorer": {}}', '{"threshold": "high"}', "[1]", '{"threshold": NaN}', '{"threshold": '):
    path.write_text(text)
    with pytest.raises(AnoganError, match="threshold.json is damaged .*; delete it and rerun the train command"):
      resolve(config)
    assert resolve(config, 0.75) == (0.75, "--threshold", None)  # not read with --threshold


# --- export decides as score does (threshold.decide): the same threshold, or the same refusal

def workdir_with_threshold(path, digests=None, settings=None):
  """A tiny ae workdir with the threshold.json training writes (threshold.make_record) from 30
  held-out scores; `digests` / `settings` replace the record's weight digests / scorer settings."""
  config = Config(model="ae", **TINY)
  make_workdir(str(path), config)
  family = models.family("ae")
  networks = load_networks(str(path), family, config)
  scorer = family.make_scorer(config, networks)
  scores = scorer.score(synthetic_images(30, seed=7)).score
  record = threshold_lib.make_record(config, scores, settings or scorer.settings(),
                                     {**threshold_lib.weights_sha256(networks), **(digests or {})})
  (path / "threshold.json").write_text(json.dumps(record))
  return str(path), record


def command_config(workdir, *argv):
  """The Config `python -m anogan_tf.export` (or score) builds for these overrides."""
  from anogan_tf.cli import flags as anogan_flags
  from anogan_tf.config import evaluation_config
  base = anogan_flags.workdir_config(workdir)
  return evaluation_config(base, anogan_flags.config_from_args(list(argv), base))


@pytest.mark.slow
def test_export_takes_the_threshold_percentile_from_the_held_out_scores_as_score_does(tmp_path):
  workdir, record = workdir_with_threshold(tmp_path / "ae")
  config = command_config(workdir, "--threshold_percentile=95")
  np.save(tmp_path / "x.npy", synthetic_images(3, seed=8))
  scored = score_lib.score_images(config, workdir, str(tmp_path / "x.npy"), str(tmp_path / "scored"), progress=False,
                                  top=0)
  metadata = export_lib.export(config, workdir, str(tmp_path / "saved"))
  # the 95th percentile of the stored held-out scores, by the one function score applies it with
  assert metadata["threshold"] == pytest.approx(np.percentile(record["val_scores"], 95), rel=1e-12)
  assert metadata["threshold"] == scored.decision.threshold != record["threshold"]  # not the stored 99th
  assert scored.decision.note.startswith(f"threshold {metadata['threshold']:.6g}: the 95th percentile of 30 ")
  assert (metadata["threshold_source"], metadata["threshold_percentile"]) == ("threshold.json", 95)
  assert tf.saved_model.load(str(tmp_path / "saved")).threshold.numpy() == np.float32(metadata["threshold"])


@pytest.mark.slow
@pytest.mark.parametrize("other", ["weights", "settings"])
def test_a_threshold_that_does_not_apply_is_refused_by_export_as_score_drops_it(tmp_path, other):
  if other == "weights":  # as if the workdir was trained further after the threshold was stored
    workdir, _ = workdir_with_threshold(tmp_path / "ae", digests={"decoder": "0" * 64})
    reason = "it was computed with other weights of decoder.keras"
  else:
    workdir, _ = workdir_with_threshold(tmp_path / "ae", settings={"recon_loss": "l2", "map_batch_size": 16})
    reason = "it was computed with --recon_loss=l2 and these scores with --recon_loss=l1"
  config = command_config(workdir)
  np.save(tmp_path / "x.npy", synthetic_images(3, seed=8))
  scored = score_lib.score_images(config, workdir, str(tmp_path / "x.npy"), str(tmp_path / "scored"), progress=False,
                                  top=0)
  assert scored.decision.threshold is None and scored.is_anomaly is None
  why = scored.decision.note
  assert why.startswith(f"the threshold in {workdir}/threshold.json does not apply: {reason}"), why
  with pytest.raises(AnoganError) as error:
    export_lib.export(config, workdir, str(tmp_path / "saved"))
  assert str(error.value) == f"{why}; or pass --threshold=T to export with a threshold of your own"
  assert not os.path.exists(tmp_path / "saved")
  assert export_lib.export(config, workdir, str(tmp_path / "saved"), threshold=0.5)["threshold"] == 0.5


@pytest.mark.parametrize("betas", [(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-7)])
def test_adam_update_is_keras_adam_to_the_bit(betas):
  beta_1, beta_2, epsilon = betas
  rng = np.random.default_rng(0)
  variable = tf.Variable(rng.normal(size=(3, 5)).astype(np.float32))
  optimizer = keras.optimizers.Adam(learning_rate=0.05, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
  optimizer.build([variable])
  z, m, v = tf.constant(variable.numpy()), tf.zeros((3, 5)), tf.zeros((3, 5))
  for step in range(12):
    gradient = tf.constant((rng.normal(size=(3, 5)) * 10.0 ** rng.uniform(-6, 2)).astype(np.float32))
    optimizer.apply_gradients([(gradient, variable)])
    z, m, v = adam_update(z, gradient, m, v, step, 0.05, beta_1, beta_2, epsilon)
    np.testing.assert_array_equal(z.numpy(), variable.numpy(), err_msg=f"step {step}")
