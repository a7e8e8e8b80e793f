"""UCR series (anogan_tf/data/ucr.py): the archive's .tsv layout read into the one-class protocol
(scaled to [-1, 1] by the normal training series' range), a one-line error for each kind of bad
input, the anomaly archive's file names, and `score` on your own series (.npy and .csv)."""

import csv
import os

import numpy as np
import pytest

from anogan_tf import AnoganError, Config, models, score_lib, train_lib
from anogan_tf.data import load_one_class, resolve_shape, ucr

STEPS = 12


def write_tsv(path, labels, series):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for label, values in zip(labels, series):
      f.write("\t".join([str(label)] + [repr(float(v)) for v in values]) + "\n")


def archive(root, name="Toy", labels_train=(1, 1, 1, 1, -1, -1), labels_test=(1, -1, 1, -1), seed=0):
  """ROOT/NAME/NAME_TRAIN.tsv and _TEST.tsv: class 1 slow sines, class -1 faster ones (amplitude 2)."""
  rng = np.random.default_rng(seed)
  t = np.arange(STEPS) / STEPS

  def series(labels):
    return [(1.0 if c == 1 else 2.0) * np.sin(2 * np.pi * (1 if c == 1 else 3) * t + rng.uniform(0, 6))
            for c in labels]
  train, test = series(labels_train), series(labels_test)
  write_tsv(os.path.join(root, name, f"{name}_TRAIN.tsv"), labels_train, train)
  write_tsv(os.path.join(root, name, f"{name}_TEST.tsv"), labels_test, test)
  return np.array(train), np.array(test)


def ucr_config(root, **changes):
  return Config(**{**dict(model="lstm_ae", dataset="ucr", data_dir=str(root), ucr_name="Toy", normal_classes=(1,),
                          lstm_units=(8,), latent_dim=4, epochs=1, batch_size=4), **changes})


def test_the_archive_layout_loads_as_one_class_data_with_labels_as_written(tmp_path):
  train, test = archive(tmp_path)
  config = resolve_shape(ucr_config(tmp_path, normal_classes=(-1,)))  # a negative label, as the archive writes it
  assert (config.series_length, config.series_features) == (STEPS, 1)
  low, high = config.series_range
  assert (low, high) == (train[4:].min(), train[4:].max())  # the normal (class -1) TRAIN series' range
  data = load_one_class(config)
  assert data.x_train.shape == (2, STEPS, 1) and data.x_test.shape == (4, STEPS, 1)
  assert list(data.y_test) == [1, 0, 1, 0] and list(data.classes_test) == [1, -1, 1, -1]
  assert data.x_train.min() == pytest.approx(-0.8) and data.x_train.max() == pytest.approx(0.8)
  np.testing.assert_allclose(data.x_test[..., 0], np.clip(-0.8 + 1.6 * (test - low) / (high - low), -1, 1), atol=1e-6)
  assert data.x_test.min() >= -1 and data.x_test.max() <= 1
  assert models.base.example_shape(models.family("lstm_ae"), config) == (STEPS, 1)


def test_held_out_normals_and_the_validation_split_never_read_test(tmp_path):
  archive(tmp_path)
  os.remove(tmp_path / "Toy" / "Toy_TEST.tsv")
  config = resolve_shape(ucr_config(tmp_path, val_fraction=0.5, eval_split="val"))
  data = load_one_class(config)
  assert len(data.x_train) == 2 and len(data.x_val) == 2
  assert sorted(data.y_test.tolist()) == [0, 0, 1, 1] and data.split == "val"


@pytest.mark.parametrize("kind, message", [
    ("missing", r"Toy_TRAIN.tsv is missing; put the archive's"),
    ("ragged", r"line 2 has 11 values but line 1 has 12: the series are ragged"),
    ("text", r"line 3: 'abc' is not a number"),
    ("label", r"line 1: the label 1.5 is not a whole number"),
    ("nan", r"series 2 has missing \(NaN\)"),
    ("class", r"no TRAIN series of class 7 .* \(its classes: -1, 1\); choose --normal_classes among those"),
    ("empty", r"holds no series"),
    ("test_length", r"Toy_TEST.tsv has series of 11 steps"),
])
def test_bad_archive_files_fail_with_one_line(tmp_path, kind, message):
  archive(tmp_path)
  path = tmp_path / "Toy" / "Toy_TRAIN.tsv"
  lines = path.read_text().splitlines()
  if kind == "missing":
    path.unlink()
  elif kind == "ragged":
    lines[1] = lines[1].rsplit("\t", 1)[0]
  elif kind == "text":
    lines[2] = lines[2].replace("\t", "\tabc\t", 1).rsplit("\t", 1)[0]
  elif kind == "label":
    lines[0] = "1.5" + lines[0][1:]
  elif kind == "nan":
    lines[1] = lines[1].rsplit("\t", 1)[0] + "\tnan"
  elif kind == "empty":
    lines = []
  elif kind == "test_length":
    test = tmp_path / "Toy" / "Toy_TEST.tsv"
    test.write_text("\n".join(line.rsplit("\t", 1)[0] for line in test.read_text().splitlines()) + "\n")
  if kind != "missing":
    path.write_text("\n".join(lines) + "\n")
  config = ucr_config(tmp_path, normal_classes=(7,) if kind == "class" else (1,))
  with pytest.raises(AnoganError, match=message) as error:
    load_one_class(resolve_shape(config))
  assert "\n" not in str(error.value)


def test_settings_of_series_fail_with_one_line():
  with pytest.raises(AnoganError, match="--dataset=ucr needs --ucr_name=NAME"):
    Config(model="lstm_ae", dataset="ucr")
  with pytest.raises(AnoganError, match="--model=ae takes images, but --dataset=ucr holds series; use --model=lstm_ae"):
    Config(model="ae", dataset="ucr", ucr_name="GunPoint")
  with pytest.raises(AnoganError, match="--model=lstm_ae takes series, but --dataset=mnist holds images"):
    Config(model="lstm_ae")
  with pytest.raises(AnoganError, match="--series_range=2.0,1.0 is not low,high with low < high"):
    Config(model="lstm_ae", dataset="ucr", ucr_name="GunPoint", series_range=(2.0, 1.0))


@pytest.mark.parametrize("name, parsed", [
    ("135_UCR_Anomaly_InternalBleeding16_1200_4187_4199.txt", ("InternalBleeding16", 1200, 4187, 4199)),
    ("001_UCR_Anomaly_DISTORTED1sddb40_35000_52000_52620.txt", ("DISTORTED1sddb40", 35000, 52000, 52620)),
])
def test_anomaly_archive_file_names_give_the_training_end_and_the_span(name, parsed):
  assert ucr.parse_anomaly_name(f"/some/where/{name}") == parsed


@pytest.mark.parametrize("name", ["135_UCR_Anomaly_X_1200_4187.txt", "InternalBleeding16_1200_4187_4199.txt",
                                  "135_UCR_Anomaly_X_5000_4187_4199.txt"])
def test_anomaly_archive_names_out_of_layout_fail_with_one_line(name):
  with pytest.raises(AnoganError, match="UCR Anomaly Archive|not in order"):
    ucr.parse_anomaly_name(name)


def test_the_shipped_anomaly_series_reads(tmp_path):
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "ucr",
                      "135_UCR_Anomaly_InternalBleeding16_1200_4187_4199.txt")
  if not os.path.isfile(path):
    pytest.skip("needs ../shared/data/ucr")
  series = ucr.read_anomaly_series(path)
  assert len(series.values) == 7501 and (series.train_end, series.begin, series.end) == (1200, 4187, 4199)
  short = tmp_path / "135_UCR_Anomaly_InternalBleeding16_1200_4187_4199.txt"
  short.write_text("\n".join(map(str, series.values[:4000])))
  with pytest.raises(AnoganError, match="has 4000 values"):
    ucr.read_anomaly_series(str(short))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("ucr")
  train, test = archive(root)
  config = ucr_config(root, lstm_max_steps=5)  # the LSTMs over patches of 3 steps: 4 LSTM steps
  workdir = str(root / "run")
  train_lib.train(config, workdir, progress=False)
  return resolve_shape(config), workdir, test


@pytest.mark.slow
def test_score_reads_your_own_series_from_npy_and_csv_in_the_datas_units(trained, tmp_path):
  """A workdir trained on --dataset=ucr records the range (flags.txt); score scales raw series
  from .npy ((n, T) or (n, T, 1)) and .csv (one a line) as training did: the scores evaluate gives."""
  config, workdir, test = trained
  flags = Config.from_flagfile_text(open(os.path.join(workdir, "flags.txt")).read())
  assert flags.series_range == config.series_range and flags.series_length == STEPS
  from anogan_tf.engine.workdir import load_scorer
  scorer, _ = load_scorer(config, workdir, models.family("lstm_ae"))
  expected = scorer.score(load_one_class(config).x_test).score
  np.save(tmp_path / "x.npy", test)
  np.save(tmp_path / "x3.npy", test[..., None])
  with open(tmp_path / "x.csv", "w", newline="") as f:
    csv.writer(f).writerows([[repr(float(v)) for v in row] for row in test])
  for name in ("x.npy", "x3.npy", "x.csv"):
    scored = score_lib.score_images(config, workdir, str(tmp_path / name), str(tmp_path / f"out_{name}"),
                                    progress=False)
    np.testing.assert_allclose(scored.score, expected, rtol=1e-5, err_msg=name)
    assert scored.files == ["0", "1", "2", "3"]
    assert all(os.path.getsize(tmp_path / f"out_{name}" / r) > 0 for r in scored.reports)
    assert os.path.getsize(tmp_path / f"out_{name}" / "top.png") > 0


@pytest.mark.slow
@pytest.mark.parametrize("content, message", [
    ("1,2,3\n", r"examples have shape \(1, 3, 1\) but the model expects \(N,\) \+ \(12, 1\)"),
    ("1,2,x," + ",".join(["0"] * 9) + "\n", r"line 1: 'x' is not a number"),
    (",".join(["0"] * 12) + "\n" + ",".join(["0"] * 11) + "\n", r"line 2 has 11 values but line 1 has 12"),
    ("\n", r"holds no series"),
])
def test_score_rejects_bad_series_files_with_one_line(trained, tmp_path, content, message):
  config, workdir, _ = trained
  (tmp_path / "bad.csv").write_text(content)
  with pytest.raises(AnoganError, match=message) as error:
    score_lib.score_images(config, workdir, str(tmp_path / "bad.csv"), str(tmp_path / "out"), progress=False)
  assert "\n" not in str(error.value) and not os.path.exists(tmp_path / "out")


def test_the_dtw_baseline_is_the_textbook_recursion():
  """experiments/ucr.py's all-pairs DTW (anti-diagonals at once) equals the cell-by-cell recursion."""
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
  import ucr as ucr_experiment

  def textbook(a, b):
    total = np.full((len(a) + 1, len(b) + 1), np.inf)
    total[0, 0] = 0
    for i in range(1, len(a) + 1):
      for j in range(1, len(b) + 1):
        total[i, j] = (a[i - 1] - b[j - 1]) ** 2 + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    return np.sqrt(total[-1, -1])
  rng = np.random.default_rng(0)
  queries, references = rng.normal(size=(3, 9)), rng.normal(size=(4, 9))
  expected = [[textbook(q, r) for r in references] for q in queries]
  np.testing.assert_allclose(ucr_experiment.dtw_distances(queries, references), expected, rtol=1e-12)
  shifted = np.roll(queries, 1, axis=1)  # a shift costs DTW less than Euclidean
  assert (ucr_experiment.dtw_distances(shifted, queries).diagonal() < np.linalg.norm(shifted - queries, axis=1)).all()


@pytest.mark.slow
def test_an_exported_lstm_ae_serves_the_libraries_scores_and_residuals_over_time(trained, tmp_path):
  """export: the SavedModel takes scaled series (N, T, 1) and gives the scores and per-step
  residuals of the library, loaded with tf.saved_model.load alone."""
  import tensorflow as tf

  from anogan_tf import export_lib
  from anogan_tf.engine.workdir import load_scorer
  config, workdir, _ = trained
  x = load_one_class(config).x_test
  scorer, _ = load_scorer(config, workdir, models.family("lstm_ae"))
  expected = scorer.score(x)
  export_lib.export(config, workdir, str(tmp_path / "saved"), threshold=float(np.median(expected.score)))
  out = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"](images=tf.constant(x))
  np.testing.assert_allclose(out["score"].numpy(), expected.score, rtol=1e-5)
  np.testing.assert_allclose(out["residual_map"].numpy(), expected.residual_map, atol=1e-5)
  assert out["residual_map"].shape == (4, STEPS, 1)


def test_lstm_max_steps_runs_the_lstms_over_patches_that_give_every_step_back():
  """--lstm_max_steps=N: a series of T > N steps reaches the LSTMs as ceil(T / p) patches of p =
  ceil(T / N) steps (the last padded with the last value), and the decoder gives all T steps back."""
  from anogan_tf.models import lstm_ae
  assert [lstm_ae.patch_size(t, n) for t, n in ((13, 0), (13, 13), (13, 5), (286, 64), (24, 64))] == [1, 1, 3, 5, 1]
  x = np.arange(2 * 13 * 2, dtype=np.float32).reshape(2, 13, 2)
  patches = lstm_ae.Patches(3, 13)(x).numpy()
  assert patches.shape == (2, 5, 6)
  np.testing.assert_array_equal(patches[0, 1], x[0, 3:6].reshape(-1))  # a patch: its steps' values, in order
  np.testing.assert_array_equal(patches[:, -1].reshape(2, 3, 2), x[:, [12, 12, 12]])  # padded with the last step
  np.testing.assert_array_equal(lstm_ae.Unpatches(3, 13)(patches).numpy(), x)
  config = Config(model="lstm_ae", dataset="ucr", ucr_name="Toy", series_length=13, series_features=2,
                  lstm_units=(8,), latent_dim=4, lstm_max_steps=5)
  networks = lstm_ae.build_networks(config)
  encoder, decoder = networks["encoder"].chain, networks["decoder"].chain
  assert isinstance(encoder[0], lstm_ae.Patches) and decoder[0].n == 5  # RepeatVector: one step a patch
  code = networks["encoder"](x)
  assert code.shape == (2, 4) and networks["decoder"](code).shape == (2, 13, 2)
  again = lstm_ae.SeriesDecoder.from_config(networks["decoder"].get_config())
  assert again.chain[0].n == 5 and again.compute_output_shape((None, 4)) == (None, 13, 2)
  with pytest.raises(AnoganError, match="--lstm_max_steps=-1"):
    Config(model="lstm_ae", dataset="ucr", ucr_name="Toy", lstm_max_steps=-1)

