"""Your own images (--dataset=folder, issue 12): an MVTec-AD-layout folder of 64x64 RGB PNGs is read,
streamed and resized as the direct reading of each picture says; training streams it from disk and
computes exactly what training on the same images in memory computes (anogan with its warm start,
ae at 64x64 with deepened networks), resumes bit for bit, and every family trains from it; the
networks deepen with --image_size; evaluate adds pixel_auroc / pixel_aupro of the residual maps
against the resized masks; bad folders are one-line errors naming the file or folder.

The dataset (built once per module): train/good/ 24 striped textures, test/good/ 6 (one a JPEG),
test/defect/ 6 with a red square, its mask in ground_truth/defect/ at twice the image size."""

import csv
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from anogan_tf import AnoganError, Config, evaluate_lib, models, train_lib
from anogan_tf.data import folder as folder_data
from anogan_tf.data import load_one_class
from anogan_tf.engine import history as history_lib
from anogan_tf.engine import workdir as workdir_lib
from anogan_tf.engine.driver import Driver
from anogan_tf.evaluation import metrics as metrics_lib
from anogan_tf.nn.networks import blocks_for_size
from anogan_tf.visualization import plots

SIZE = 64
TINY = dict(dataset="folder", latent_dim=8, g_dense_channels=8, g_filters=(8, 4), d_filters=(4, 8), e_filters=(4, 8),
            batch_size=10, bn_momentum=0.5, lr=5e-3, lr_decay_epoch=0, g_steps=1, seed=0, deterministic=True,
            map_steps=(3, 3), map_batch_size=16)


def texture(rng, size=SIZE):
  """A striped colour texture in [0, 1]: (size, size, 3)."""
  yy, xx = np.mgrid[0:size, 0:size] / size
  return np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (2 * xx + yy) + p) for p in rng.uniform(0, 2 * np.pi, 3)], -1)


def save(array01, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.uint8(np.round(np.clip(array01, 0, 1) * 255))).save(path)


def make_dataset(root, n_train=24, n_good=6, n_defect=6, seed=0):
  """The MVTec-layout folder; returns {test picture path under root: its 64x64 mask}."""
  rng = np.random.default_rng(seed)
  for i in range(n_train):
    save(texture(rng), f"{root}/train/good/{i:03d}.png")
  masks = {}
  for i in range(n_good):
    name = f"test/good/{i:03d}." + ("jpg" if i == 0 else "png")
    save(texture(rng), f"{root}/{name}")
    masks[name] = np.zeros((SIZE, SIZE), bool)
  for i in range(n_defect):
    image, mask = texture(rng), np.zeros((SIZE, SIZE), bool)
    r, c = rng.integers(4, SIZE - 20, 2)
    mask[r:r + 12, c:c + 14] = True
    image[mask] = (1.0, 0.1, 0.1)
    save(image, f"{root}/test/defect/{i:03d}.png")
    save(np.kron(mask, np.ones((2, 2))), f"{root}/ground_truth/defect/{i:03d}_mask.png")  # twice the size: resized
    masks[f"test/defect/{i:03d}.png"] = mask
  return masks


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("folder")
  return str(root), make_dataset(str(root))


def pil_read(path):
  return np.asarray(Image.open(path).convert("RGB"), np.float32) / 127.5 - 1.0


def tiny(root, **changes):
  return folder_data.resolve_image_shape(Config(data_dir=root, **{**TINY, **changes}))


def weights(path):
  return [w.numpy() for w in keras.models.load_model(path).weights]


# --- reading: the pipeline yields what a direct read of each picture gives

def test_stream_yields_the_pictures_in_the_epoch_order_with_their_noise_rows(dataset):
  root, _ = dataset
  config = tiny(root)
  assert (config.image_size, config.channels, config.image_shape) == (64, 3, (64, 64, 3))  # from the pictures
  files = load_one_class(config, read_test=False).x_train
  assert len(files) == 24 and list(files.paths) == sorted(files.paths)
  order = np.random.default_rng(3).permutation(len(files))
  noise = np.random.default_rng(4).normal(size=(len(files), 5)).astype(np.float32)
  batches = list(files.dataset(order, noise, 10))
  assert [len(x) for x, _ in batches] == [10, 10, 4]  # the last batch smaller, as the in-memory epoch has it
  streamed = np.concatenate([x.numpy() for x, _ in batches])
  np.testing.assert_array_equal(streamed, np.stack([pil_read(files.paths[i]) for i in order]))
  np.testing.assert_array_equal(np.concatenate([z.numpy() for _, z in batches]), noise)
  # --image_size resizes (antialiased bilinear, as tf.image.resize does it) and --channels converts
  small = tiny(root, image_size=32, channels=1)
  files32 = load_one_class(small, read_test=False).x_train
  x32 = np.concatenate([x.numpy() for x, _ in files32.dataset(order[:4], noise[:4], 4)])
  gray = [np.asarray(Image.open(files.paths[i]).convert("L"), np.float32)[..., None] for i in order[:4]]
  expected = tf.image.resize(np.stack(gray), (32, 32), antialias=True).numpy() / 127.5 - 1.0
  assert x32.shape == (4, 32, 32, 1)
  np.testing.assert_allclose(x32, expected, atol=2 / 127.5)  # TF's and Pillow's gray conversions round apart
  np.testing.assert_array_equal(folder_data.read_image(files.paths[order[0]], (32, 32, 1)), x32[0])


def test_channels_come_from_the_training_pictures(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(3):
    Image.fromarray(np.uint8(texture(rng, 40)[..., 0] * 255)).save(tmp_path / f"g{i}.png")  # grayscale, 40x40
  os.makedirs(tmp_path / "root" / "train")
  shutil.copytree(tmp_path, tmp_path / "root" / "train" / "good", ignore=shutil.ignore_patterns("root"))
  config = folder_data.resolve_image_shape(Config(dataset="folder", data_dir=str(tmp_path / "root")))
  assert config.image_shape == (64, 64, 1)
  assert folder_data.resolve_image_shape(config.replace(channels=3)).image_shape == (64, 64, 3)  # --channels wins
  save(texture(rng, 40), str(tmp_path / "root" / "train" / "good" / "rgb.png"))
  with pytest.raises(AnoganError) as error:
    folder_data.resolve_image_shape(Config(dataset="folder", data_dir=str(tmp_path / "root")))
  message = str(error.value)
  assert "mix grayscale" in message and "rgb.png" in message and "--channels=1" in message and "\n" not in message
  assert folder_data.resolve_image_shape(config.replace(channels=1)).channels == 1  # converted: no error
  with pytest.raises(AnoganError, match="pass --channels=1 or --channels=3"):
    Config(dataset="folder", data_dir=str(tmp_path / "root")).image_shape  # not resolved yet: unknown


def test_image_size_resizes_an_npz_dataset_too(mnist_dir):
  native = load_one_class(Config(normal_classes=(1,), test_examples=20, train_examples=50))
  resized = load_one_class(Config(normal_classes=(1,), test_examples=20, train_examples=50, image_size=32))
  assert native.x_train.shape == (50, 28, 28, 1) and resized.x_test.shape == (20, 32, 32, 1)
  np.testing.assert_allclose(resized.x_train, tf.image.resize(native.x_train, (32, 32), antialias=True), atol=1e-6)
  assert Config(image_size=32).generator_kwargs()["image_shape"] == (32, 32, 1)


# --- the networks' depth follows --image_size, every family; MNIST keeps seed 000's

@pytest.mark.parametrize("size", [28, 32, 64, 128, 256])
def test_depth_follows_the_image_size(size):
  config = Config() if size == 28 else Config(dataset="folder", data_dir="unused", image_size=size, channels=3)
  extra = {28: 0, 32: 0, 64: 1, 128: 2, 256: 3}[size]
  assert blocks_for_size(size) == extra
  g, d, e = config.generator_kwargs(), config.discriminator_kwargs(), config.encoder_kwargs()
  assert g["strides"] == (2,) * extra + (2, 2, 1) and g["filters"][extra:] == (16, 8)
  assert d["strides"] == e["strides"] == (2, 2) + (2,) * extra and d["filters"][:2] == e["filters"][:2] == (16, 32)
  assert list(g["filters"][:extra]) == [16 * 2 ** (extra - i) for i in range(extra)]  # doubling toward the Dense
  for name in [n for n in models.names() if models.examples(models.family(n)) == "images"]:  # networks of images
    networks = models.family(name).build_networks(config)
    for net in networks.values():
      if type(net).__module__ != "anogan_tf.nn.networks":
        continue  # a family's own networks (draem's U-Nets: pooled, see test_draem)
      convs = [layer for layer in net._flatten_layers(include_self=False)
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
      strided = [layer for layer in convs if layer.strides == (2, 2)]
      assert len(strided) == 2 + extra, (name, net.name)
    if name == "anogan" and size == 28:  # seed 000's networks, weight for weight
      assert [n.count_params() for n in networks.values()] == [86049, 6369]
    if name == "anogan":
      image = networks["generator"](tf.zeros((1, 50)))
      assert image.shape == (1,) + config.image_shape
      flat = networks["discriminator"].features(image, layer="flatten")
      assert flat.shape[-1] == (7 * 7 * 32 if size == 28 else 8 * 8 * d["filters"][-1])  # the same 8x8 at every size


# --- training streams from disk: the same numbers as in memory, and it resumes

@pytest.mark.slow
def test_anogan_streams_resumes_and_equals_training_in_memory(dataset, tmp_path):
  root, _ = dataset
  config = tiny(root, epochs=2, encoder_epochs=1, image_size=32)  # resized while streaming; 64 for ae below
  in_memory = load_one_class(config, read_test=False)
  in_memory.x_train = in_memory.x_train.read()  # the same pictures as one array: the .npz datasets' path
  memory, resumed = str(tmp_path / "memory"), str(tmp_path / "resumed")
  history = train_lib.train(config, memory, data=in_memory, progress=False)
  train_lib.train(config.replace(epochs=1, encoder_epochs=0), resumed, progress=False)  # streamed, then
  again = train_lib.train(config, resumed, progress=False)  # resumed: the GAN's epoch 2, then the warm start's E
  drop = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
  assert drop(history) == drop(again) and len(history) == 2
  assert drop(history_lib.read_history(f"{memory}/{models.family('anogan').WARM_START.history}")) == \
      drop(history_lib.read_history(f"{resumed}/{models.family('anogan').WARM_START.history}"))
  for name in ("generator", "discriminator", "encoder"):
    for a, b in zip(weights(f"{memory}/{name}.keras"), weights(f"{resumed}/{name}.keras"), strict=True):
      np.testing.assert_array_equal(a, b, err_msg=name)
  recorded = Config.from_flagfile_text(open(f"{resumed}/flags.txt").read())
  assert recorded == config and recorded.image_shape == (32, 32, 3)  # the channels found, recorded
  assert os.path.exists(f"{resumed}/samples/encoder_epoch_0001.png")

  # evaluate: image metrics, and the pixel metrics of the residual maps against the resized masks
  metrics = evaluate_lib.evaluate(config, resumed, progress=False)
  assert 0 <= metrics["auroc"] <= 1 and (metrics["n_normal"], metrics["n_anomalous"]) == (6, 6)
  assert 0 <= metrics["pixel_auroc"] <= 1 and 0 <= metrics["pixel_aupro"] <= 1
  assert metrics["image_shape"] == [32, 32, 3]
  with open(f"{resumed}/eval/scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["file"] for r in rows] == sorted(r["file"] for r in rows) and rows[0]["file"] == "test/defect/000.png"
  assert {r["class"] for r in rows} == {"good", "defect"}
  assert all(int(r["label"]) == (r["class"] == "defect") for r in rows)
  assert os.path.getsize(f"{resumed}/eval/gallery.png") > 0


@pytest.mark.slow
def test_encoder_family_evaluate_pixel_metrics_are_those_of_its_residual_maps(dataset, tmp_path):
  from sklearn.metrics import roc_auc_score
  root, masks = dataset
  config = tiny(root, model="ae", epochs=1)
  workdir = str(tmp_path / "ae")
  train_lib.train(config, workdir, progress=False)
  # Streamed at 64x64 (deepened networks), the same weights as an epoch on the pictures in memory.
  keras.utils.set_random_seed(config.seed)
  driver = Driver(config)
  driver.train_epoch(tf.constant(load_one_class(config, read_test=False).x_train.read()), 0)
  for name, network in driver.networks.items():
    for a, b in zip(weights(f"{workdir}/{name}.keras"), network.weights, strict=True):
      np.testing.assert_array_equal(a, b.numpy(), err_msg=name)
  metrics = evaluate_lib.evaluate(config, workdir, progress=False)
  data = load_one_class(config)
  expected = np.stack([masks[name] for name in data.names])  # the masks as drawn, before the 2x round trip
  np.testing.assert_array_equal(data.masks, expected)
  family = models.family("ae")
  result = family.make_scorer(config, workdir_lib.load_networks(workdir, family)).score(data.x_test)
  np.testing.assert_array_equal(data.x_test[[data.names.index("test/defect/001.png")]],
                                pil_read(f"{root}/test/defect/001.png")[None])
  auroc = roc_auc_score(expected.ravel(), result.residual_map.mean(axis=-1).ravel())
  assert metrics["pixel_auroc"] == pytest.approx(auroc, abs=1e-6)
  assert 0 < metrics["pixel_auroc"] < 1  # not a degenerate case
  assert json.load(open(f"{workdir}/eval/metrics.json"))["pixel_auroc"] == metrics["pixel_auroc"]

  # A defect folder with no masks at all: pixel metrics skipped, with the reason in metrics.json.
  bare = tmp_path / "bare"
  shutil.copytree(root, bare)
  shutil.rmtree(bare / "ground_truth" / "defect")
  skipped = evaluate_lib.evaluate(config.replace(data_dir=str(bare)), workdir, progress=False,
                                  out_dir=str(tmp_path / "eval_bare"))
  assert "pixel_auroc" not in skipped and skipped["pixel_metrics"].startswith("skipped: no masks for test/defect/")
  assert skipped["auroc"] == metrics["auroc"]

  # --val_fraction holds good training pictures out; as an evaluation set they have no anomalies.
  val = config.replace(val_fraction=0.25, eval_split="val")
  data = load_one_class(val)
  assert len(data.x_train) == 18 and len(data.x_test) == 6 and not data.y_test.any()
  assert not set(data.names) & {os.path.relpath(p, root) for p in data.x_train.paths}
  with pytest.raises(AnoganError, match="validation set is its held-out train/good/ images only"):
    evaluate_lib.evaluate(val, workdir, data=data, progress=False, out_dir=str(tmp_path / "eval_val"))


@pytest.mark.slow
def test_score_reads_pictures_of_any_size_as_training_and_evaluate_do(dataset, tmp_path):
  """One picture reader: test pictures of other sizes (80x80, and 90x70: another aspect ratio)
  get from score (no --resize) the score evaluate gives the same file, to the bit. The same
  pixels (folder_data.decode: bilinear with antialiasing) and the same kernels: both score the
  12 test pictures, in the same order, as one chunk of 12 (--map_batch_size=16), so each
  picture's search starts from the same z and runs on the same chunk."""
  from anogan_tf import score_lib
  root, _ = dataset
  data = tmp_path / "data"
  shutil.copytree(root, data)
  rng = np.random.default_rng(5)
  save(texture(rng, 80), str(data / "test" / "good" / "003.png"))
  image = texture(rng, 90)[:70]  # 70 rows of 90 pixels
  image[20:40, 30:50] = (1.0, 0.1, 0.1)
  save(image, str(data / "test" / "defect" / "002.png"))
  config = tiny(str(data), epochs=1, image_size=32)
  workdir = str(tmp_path / "run")
  train_lib.train(config, workdir, progress=False)
  evaluate_lib.evaluate(config, workdir, progress=False)
  with open(f"{workdir}/eval/scores.csv", newline="") as f:
    evaluated = {r["file"]: r["score"] for r in csv.DictReader(f)}  # exact text: reads back bit for bit
  assert len(evaluated) == 12 and "test/good/003.png" in evaluated
  for resize in (False, True):  # --resize: accepted, and changes nothing
    out = tmp_path / f"scored_{resize}"
    score_lib.score_images(config, workdir, str(data / "test" / "*" / "*"), str(out), progress=False, top=0,
                           resize=resize)
    with open(out / "scores.csv", newline="") as f:
      scored = {"test/" + r["file"]: r["score"] for r in csv.DictReader(f)}
    assert scored == evaluated


@pytest.mark.slow
@pytest.mark.parametrize("name", ["egbad", "vae"])
def test_the_other_families_train_from_a_folder(dataset, name):
  root, _ = dataset
  config = tiny(root, model=name, image_size=32)  # resized to 32: the configured depth
  files = load_one_class(config, read_test=False).x_train
  losses = Driver(config).train_epoch(files, 0)
  assert tuple(losses) == models.family(name).make_trainer(config, models.family(name).build_networks(config)).loss_names
  assert all(np.isfinite(v) for v in losses.values())


# --- pixel metrics on hand-made cases

def naive_aupro(masks, maps, max_fpr=0.3):
  """The PRO curve by its definition, one threshold at a time (8-connected regions per image)."""
  from scipy import ndimage
  regions = [(i, ndimage.label(m, np.ones((3, 3)))) for i, m in enumerate(masks)]
  regions = [(i, labels == k) for i, (labels, n) in regions for k in range(1, n + 1)]
  normal = ~masks
  points = [(0.0, 0.0)]
  for t in sorted(set(maps.ravel()), reverse=True):
    fpr = np.sum((maps >= t) & normal) / normal.sum()
    pro = np.mean([np.mean(maps[i][region] >= t) for i, region in regions])
    points.append((fpr, pro))
  x, y = np.array(points).T
  xs = np.linspace(0, max_fpr, 30001)
  return np.trapezoid(np.interp(xs, x, y), xs) / max_fpr


def test_pixel_metrics_on_hand_made_maps():
  from sklearn.metrics import roc_auc_score
  masks = np.zeros((2, 6, 6), bool)
  masks[0, 1:3, 1:3] = True  # a 4-pixel region
  masks[0, 4, 4] = masks[0, 5, 5] = True  # two diagonal pixels: one 8-connected region
  masks[1, 0, 0:5] = True
  rng = np.random.default_rng(0)
  maps = np.round(rng.uniform(0, 1, masks.shape) + 0.6 * masks, 2).astype(np.float32)  # ties included
  metrics = metrics_lib.pixel_metrics(masks, maps)
  assert metrics["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
  assert metrics["pixel_aupro"] == pytest.approx(naive_aupro(masks, maps), abs=1e-4)
  assert 0.3 < metrics["pixel_aupro"] < 1
  assert metrics_lib.pixel_aupro(masks, masks.astype(np.float32)) == pytest.approx(1.0)  # perfect maps
  assert metrics_lib.pixel_aupro(masks, (~masks).astype(np.float32)) == pytest.approx(0.0)
  # one region found at once (all its pixels top-ranked), the other never: PRO 1/2 from FPR 0
  half = np.where(masks, 0.0, 0.5).astype(np.float32)
  half[1, 0, 0:5] = 1.0
  two = np.zeros((1, 6, 6), bool)
  two[0, 0, 0:2] = two[0, 5, 4:6] = True
  half2 = np.where(two, 0.0, 0.5).astype(np.float32)
  half2[0, 0, 0:2] = 1.0
  assert metrics_lib.pixel_aupro(two, half2) == pytest.approx(0.5)
  assert metrics_lib.pixel_metrics(np.zeros_like(masks), maps) == {}  # no anomalous pixel: undefined


def test_gallery_outlines_the_masks(tmp_path):
  x = np.zeros((2, 16, 16, 3), np.float32)
  masks = np.zeros((2, 16, 16), bool)
  masks[:, 4:10, 4:10] = True
  for name, m in (("with", masks), ("without", None)):
    plots.gallery(x, x, np.zeros_like(x), ["a", "b"], str(tmp_path / f"{name}.png"), masks=m)
  def lime(name):  # noqa: E306
    rgb = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB")).astype(int)
    return np.sum((rgb[..., 1] > 200) & (rgb[..., 0] < 100) & (rgb[..., 2] < 100))
  assert lime("with") > 50 and lime("without") == 0


# --- bad folders: one line naming the problem and the fix

def _bad_roots(tmp_path, dataset_root):
  """{case: (root, what the message must contain)}."""
  def copy(name):
    target = tmp_path / name
    shutil.copytree(dataset_root, target)
    return target
  cases = {"missing root": (tmp_path / "nowhere", "does not exist; --data_dir")}
  root = copy("no_train")
  shutil.rmtree(root / "train" / "good")
  cases["missing train/good"] = (root, "train/good is missing; put the normal training images there")
  root = copy("empty_train")
  for f in (root / "train" / "good").iterdir():
    f.unlink()
  (root / "train" / "good" / "notes.txt").write_text("not a picture")
  cases["empty train/good"] = (root, "no PNG/JPEG images in")
  root = copy("corrupt")
  (root / "train" / "good" / "005.png").write_bytes(b"this is not a PNG file")
  cases["corrupt picture"] = (root, "005.png is not a readable image")
  root = copy("mixed")
  Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "train" / "good" / "010.png")  # grayscale among colour
  cases["mixed channels"] = (root, "the training images mix grayscale (")
  return cases


def test_bad_training_folders_are_one_line_errors(dataset, tmp_path):
  root, _ = dataset
  for case, (bad, part) in _bad_roots(tmp_path, root).items():
    with pytest.raises(AnoganError) as error:  # the settings as the train command passes them: channels unknown
      train_lib.train(Config(data_dir=str(bad), **{**TINY, "epochs": 1}), str(tmp_path / "w"), progress=False)
    message = str(error.value)
    assert part in message and "\n" not in message, (case, message)
    assert not os.path.exists(tmp_path / "w"), case  # nothing left behind
  for changes, part in ((dict(image_size=48), "unsupported --image_size=48; use 32, 64, 128 or 256"),
                        (dict(image_size=28), "unsupported --image_size=28"),
                        (dict(channels=4), "unsupported --channels=4; use 1 (grayscale), 3 (RGB)"),
                        (dict(data_dir=""), "--dataset=folder needs --data_dir=ROOT")):
    with pytest.raises(AnoganError, match=part.replace("(", r"\(").replace(")", r"\)")):
      Config(**{**TINY, "data_dir": root, **changes})


def test_a_picture_that_fails_to_decode_is_named_while_streaming_and_reading(dataset, tmp_path):
  root, _ = dataset
  bad = tmp_path / "truncated"
  shutil.copytree(root, bad)
  picture = bad / "train" / "good" / "007.png"
  picture.write_bytes(picture.read_bytes()[:300])  # its header is intact: found only when decoded
  config = tiny(str(bad), model="ae", image_size=32)  # the header check passes
  files = load_one_class(config, read_test=False).x_train
  with pytest.raises(AnoganError, match=f"{picture} is not a readable image"):
    Driver(config).train_epoch(files, 0)
  with pytest.raises(AnoganError, match=f"{picture} is not a readable image"):
    files.read()
  test_picture = bad / "test" / "defect" / "002.png"
  test_picture.write_bytes(test_picture.read_bytes()[:300])
  with pytest.raises(AnoganError, match=f"{test_picture} is not a readable image"):
    load_one_class(config)


def test_bad_test_folders_and_masks_are_one_line_errors(dataset, tmp_path):
  root, _ = dataset
  config = tiny(root)
  cases = []
  bad = tmp_path / "no_test"
  shutil.copytree(root, bad)
  shutil.rmtree(bad / "test")
  cases.append((bad, "test is missing; put the test images in test/good/ (normal) and test/<defect>/"))
  bad = tmp_path / "only_good"
  shutil.copytree(root, bad)
  shutil.rmtree(bad / "test" / "defect")
  cases.append((bad, "holds only good/; put anomalous test images in test/<defect>/"))
  bad = tmp_path / "empty_defect"
  shutil.copytree(root, bad)
  os.makedirs(bad / "test" / "scratch")
  cases.append((bad, "no PNG/JPEG images in"))
  bad = tmp_path / "missing_mask"
  shutil.copytree(root, bad)
  os.remove(bad / "ground_truth" / "defect" / "003_mask.png")
  cases.append((bad, "003.png has no mask"))
  for bad, part in cases:
    with pytest.raises(AnoganError) as error:
      load_one_class(config.replace(data_dir=str(bad)))
    assert part in str(error.value) and "\n" not in str(error.value), str(error.value)

