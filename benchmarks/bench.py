"""`make bench`: mapping and training throughput, memory and FLOP efficiency, in one run.

  python benchmarks/bench.py --output=experiments/results/bench

Writes <output>.json and <output>.md. Every ratio compares figures measured in this run.
Seed-000 networks (randomly initialised: throughput does not depend on the weight values).
Not part of the installed package: a script beside it that measures the anogan_tf of the checkout
it sits in (its folder's parent comes first on sys.path, as experiments/reproduce.py does).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("output", "experiments/results/bench", "Path prefix of the .json and .md reports.")
flags.DEFINE_integer("test_images", 10000, "Images in the 'whole test split' measurement.")
flags.DEFINE_string("child", "", "Internal: run one measurement in this process and print JSON.")
flags.DEFINE_bool("goals", False, "Only the rows of issue 25's goals (make bench-goals): mapping, training and "
                  "one by one in float32 and bfloat16, and the PyTorch peer's mapping, with their ratios.")
FLAGS = flags.FLAGS

STEPS = 150  # seed 000: 50 + 100 Adam iterations
# The --precision a child measures in: float32, or bfloat16 when its spec ends in ":bf16".
PRECISION = {"value": "float32"}


def _images(n, seed=0):
  """MNIST test images when the data folder has them, otherwise uniform noise in [-1, 1]."""
  from anogan_tf.data import load_arrays, resolve_data_dir, to_float_images
  if os.path.isfile(os.path.join(resolve_data_dir(), "mnist.npz")):
    (_, _), (x_test, _) = load_arrays("mnist")
    x = to_float_images(x_test)
    return np.concatenate([x] * (-(-n // len(x))))[:n], "mnist test split"
  return np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32), "uniform noise"


def _use_keras_batchnorm():
  """For weighing the fused BatchNorm in this process only: Keras' own (unfused) layer runs instead."""
  import keras

  from anogan_tf.nn import layers
  layers.FusedBatchNormalization.call = keras.layers.BatchNormalization.call


def _networks():
  import keras

  from anogan_tf import Discriminator, Generator
  from anogan_tf.nn import precision
  keras.utils.set_random_seed(0)
  return precision.built(PRECISION["value"], lambda: (Generator(), Discriminator()))


def measure_encoder(batch_size=1024, n_images=65536):
  """Images/s of the encoder's forward pass (egbad's and the autoencoders' E, seed 000's D shape):
  what a one-pass family's scoring runs per image."""
  import keras
  import tensorflow as tf

  from anogan_tf import Config
  from anogan_tf.nn import precision
  from anogan_tf.nn.networks import Encoder
  keras.utils.set_random_seed(0)
  encoder = precision.built(PRECISION["value"], lambda: Encoder(**Config().encoder_kwargs()))
  x, source = _images(n_images)
  run = tf.function(lambda x: encoder(x, training=False), input_signature=[tf.TensorSpec((batch_size, 28, 28, 1))])
  run(tf.constant(x[:batch_size]))
  began = time.perf_counter()
  for first in range(0, n_images, batch_size):
    run(tf.constant(x[first:first + batch_size])).numpy()
  seconds = time.perf_counter() - began
  return {"batch_size": batch_size, "images": n_images, "seconds": round(seconds, 3),
          "images_per_second": round(n_images / seconds, 1), "data": source}


def measure_mapping(batch_size, n_images, jit_compile=False):
  """Images/s of LatentMapper.map over n_images at this batch size (0: the mapper's automatic one, as
  evaluate runs it), after one warm-up chunk."""
  from anogan_tf import LatentMapper
  g, d = _networks()
  mapper = LatentMapper(g, d, batch_size=batch_size, jit_compile=jit_compile)
  batch_size = mapper.batch_size
  x, source = _images(n_images + batch_size)  # the first batch_size images warm up
  mapper.map(x[:batch_size])  # trace and warm up
  began = time.perf_counter()
  for _ in mapper.map_chunks(x[batch_size:]):  # as evaluate runs it: chunks of one compiled shape
    pass
  seconds = time.perf_counter() - began
  return {"batch_size": batch_size, "images": n_images, "seconds": round(seconds, 3),
          "images_per_second": round(n_images / seconds, 3), "jit_compile": jit_compile,
          "traces": mapper.trace_count, "data": source}


def measure_interleaved(rounds, n_images):
  """Mapping in float32 and in bfloat16 taking turns in one process, each at its automatic batch:
  per round n_images in each precision (after one warm-up chunk each), so the two share the
  machine's load as it comes and goes. Images/s per round and precision, and each round's ratio."""
  import keras

  from anogan_tf import Discriminator, Generator, LatentMapper
  from anogan_tf.nn import precision
  x, source = _images(n_images)
  mappers = {}
  for name in ("float32", "bfloat16"):
    keras.utils.set_random_seed(0)
    g, d = precision.built(name, lambda: (Generator(), Discriminator()))
    mappers[name] = LatentMapper(g, d)
    mappers[name].map(x[:mappers[name].batch_size])  # trace and warm up
  per_round = {name: [] for name in mappers}
  for _ in range(rounds):
    for name, mapper in mappers.items():
      began = time.perf_counter()
      for _ in mapper.map_chunks(x):
        pass
      per_round[name].append(round(n_images / (time.perf_counter() - began), 3))
  ratios = [round(b / a, 2) for a, b in zip(per_round["float32"], per_round["bfloat16"])]
  return {"rounds": rounds, "images": n_images, "data": source,
          "batch_size": {name: m.batch_size for name, m in mappers.items()}, "images_per_second": per_round,
          "bf16_over_fp32_per_round": ratios, "bf16_over_fp32_median": float(np.median(ratios))}


def measure_interleaved_training(rounds, batch_size=256, n_images=2560):
  """Training in float32 and in bfloat16 taking turns in one process (an epoch of n_images each
  per round, after a traced one), as measure_interleaved does for the mapping; besides each
  round's ratio, the ratio of the two precisions' total times over all rounds and that of the
  process CPU time they took (which waiting for a busy machine's cores does not count)
  (`--child=interleaved_training:ROUNDS[:IMAGES]`: many short rounds follow a shared machine's load closer)."""
  import tensorflow as tf

  from anogan_tf import Config
  from anogan_tf.engine.driver import Driver
  x = tf.constant(_images(n_images)[0])
  drivers = {name: Driver(Config(batch_size=batch_size, precision=name)) for name in ("float32", "bfloat16")}
  for driver in drivers.values():
    driver.train_epoch(x, 0)  # trace
  per_round = {name: [] for name in drivers}
  cpu = {name: 0.0 for name in drivers}
  for epoch in range(1, rounds + 1):
    for name, driver in drivers.items():
      began, began_cpu = time.perf_counter(), time.process_time()
      driver.train_epoch(x, epoch)
      per_round[name].append(round(n_images / (time.perf_counter() - began), 1))
      cpu[name] += time.process_time() - began_cpu
  ratios = [round(b / a, 2) for a, b in zip(per_round["float32"], per_round["bfloat16"])]
  seconds = {name: sum(n_images / v for v in values) for name, values in per_round.items()}
  return {"rounds": rounds, "images": n_images, "batch_size": batch_size, "images_per_second": per_round,
          "bf16_over_fp32_per_round": ratios, "bf16_over_fp32_median": float(np.median(ratios)),
          "bf16_over_fp32_all_rounds": round(seconds["float32"] / seconds["bfloat16"], 3),
          "process_cpu_seconds": {name: round(v, 3) for name, v in cpu.items()},
          "bf16_over_fp32_cpu_time": round(cpu["float32"] / cpu["bfloat16"], 3)}


PICTURES_FLAGS = os.path.join(ROOT, "experiments", "pictures_draem.flags")


def measure_pictures(rounds, n_images=256):
  """The picture preset's networks (experiments/pictures_draem.flags: DRAEM at 64x64 colour, 16 to
  128 channels, batch 16) in float32 and in bfloat16 taking turns in one process, on noise pictures
  (the time does not depend on what they show): per round an epoch of n_images in each precision
  (after a traced one), then the n_images scored in each (automatic batch, after a warm-up). The
  wider networks real pictures need, where bfloat16's convolutions gain most."""
  import dataclasses

  import tensorflow as tf

  from anogan_tf import Config, models
  from anogan_tf.engine.driver import Driver
  with open(PICTURES_FLAGS) as f:
    base = Config.from_flagfile_text(f.read() + "--dataset=folder\n--data_dir=unused\n--image_size=64\n--channels=3\n")
  x = np.random.default_rng(0).uniform(-1, 1, (n_images,) + base.image_shape).astype(np.float32)
  x_tensor = tf.constant(x)
  family, names = models.family(base.model), ("float32", "bfloat16")
  drivers, scorers = {}, {}
  for name in names:
    config = dataclasses.replace(base, precision=name)
    drivers[name] = Driver(config)  # its networks in this precision serve the scorer too
    drivers[name].train_epoch(x_tensor, 0)  # trace
    scorers[name] = family.make_scorer(config, drivers[name].networks)
    scorers[name].score(x[:scorers[name].batch_size])  # trace and warm up
  per_round = {"training": {name: [] for name in names}, "scoring": {name: [] for name in names}}
  for epoch in range(1, rounds + 1):
    for name in names:
      began = time.perf_counter()
      drivers[name].train_epoch(x_tensor, epoch)
      per_round["training"][name].append(round(n_images / (time.perf_counter() - began), 1))
    for name in names:
      began = time.perf_counter()
      scorers[name].score(x)
      per_round["scoring"][name].append(round(n_images / (time.perf_counter() - began), 1))
  out = {"rounds": rounds, "images": n_images, "data": "uniform noise", "networks": "experiments/pictures_draem.flags",
         "image_shape": list(base.image_shape), "batch_size": {"training": base.batch_size,
                                                                "scoring": {n: s.batch_size for n, s in scorers.items()}}}
  for kind, values in per_round.items():
    ratios = [round(b / a, 2) for a, b in zip(values["float32"], values["bfloat16"])]
    out[kind] = {"images_per_second": values, "bf16_over_fp32_per_round": ratios,
                 "bf16_over_fp32_median": float(np.median(ratios))}
  return out


def measure_seed_style(n_images):
  """The seed's way: one image at a time, one Python call (TF1: one sess.run) per Adam step."""
  import keras
  import tensorflow as tf

  from anogan_tf.nn import losses
  g, d = _networks()
  x, _ = _images(n_images)
  z = tf.Variable(tf.zeros((1, 50)))
  optimizers = [keras.optimizers.Adam(lr, epsilon=1e-8) for lr in (1e-1, 1e-2)]
  for opt in optimizers:
    opt.build([z])

  def make_step(opt):
    @tf.function
    def step(target):
      with tf.GradientTape() as tape:
        generated = g(z, training=False)
        loss = losses.anomaly_score(losses.residual_loss(target, generated),
                                    losses.discrimination_loss(d.features(target), d.features(generated)), 0.7)
        total = tf.reduce_sum(loss)
      opt.apply_gradients([(tape.gradient(total, z), z)])
      return loss
    return step

  steps = [make_step(opt) for opt in optimizers]
  rng = np.random.default_rng(0)

  def map_one(image):
    z.assign(rng.uniform(-1, 1, (1, 50)).astype(np.float32))
    for opt in optimizers:  # fresh Adam per image, as the seed re-initialised its variables
      for v in opt.variables[2:]:  # moments only: variables[0:2] are iterations and learning rate
        v.assign(tf.zeros_like(v))
      opt.iterations.assign(0)
    target = tf.constant(image[None])
    for i in range(STEPS):
      steps[0 if i < 50 else 1](target)

  map_one(x[0])  # trace
  began = time.perf_counter()
  for image in x:
    map_one(image)
  seconds = time.perf_counter() - began
  return {"batch_size": 1, "images": n_images, "seconds": round(seconds, 3),
          "images_per_second": round(n_images / seconds, 3), "style": "one Python call per Adam step"}


def measure_whole_split(n_images, batch_size):
  """Maps n_images as `evaluate` does; reports throughput and the process's peak RSS."""
  result = measure_mapping(batch_size, n_images)
  result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  return result


def measure_training(batch_size=256, n_images=5120, epochs=3):
  import tensorflow as tf

  from anogan_tf import Config
  from anogan_tf.engine.driver import Driver
  x, _ = _images(n_images)
  driver = Driver(Config(batch_size=batch_size, precision=PRECISION["value"]))  # anogan: seed 000's GAN
  x = tf.constant(x)
  driver.train_epoch(x, 0)  # trace
  began = time.perf_counter()
  for epoch in range(1, epochs + 1):
    driver.train_epoch(x, epoch)
  seconds = time.perf_counter() - began
  return {"batch_size": batch_size, "images": n_images * epochs, "seconds": round(seconds, 3),
          "images_per_second": round(n_images * epochs / seconds, 1), "step": "1 D step + 2 G steps per batch"}


def _tensor_maker(seed=0):
  """r(*shape): a standard-normal tensor (float32, or bfloat16 in a bf16 child), from one seeded stream."""
  import tensorflow as tf
  rng = np.random.default_rng(seed)
  dtype = tf.bfloat16 if PRECISION["value"] == "bfloat16" else tf.float32
  return lambda *shape: tf.cast(tf.constant(rng.standard_normal(shape).astype(np.float32)), dtype)


def _fastest_ms(fn, *args, repeats=15):
  """Milliseconds of the fastest of `repeats` calls of tf.function(fn)(*args), after a warm-up."""
  import tensorflow as tf
  fn = tf.function(fn)
  fn(*args)
  best = float("inf")
  for _ in range(repeats):
    began = time.perf_counter()
    fn(*args).numpy()
    best = min(best, time.perf_counter() - began)
  return round(best * 1000, 2)


def measure_layers(batch_size=1024, repeats=15):
  """Milliseconds per call of each convolution of one mapping iteration, alone, at this batch.

  Every way TensorFlow offers to compute each one is timed (the fastest of `repeats` calls):
  forward = what G or D runs, input gradient = what the gradient to z runs. A transposed
  convolution is either conv2d_transpose (TF's backprop-input kernel) or, for stride 2, four
  phase convolutions in one conv2d (`anogan_tf.nn.layers`), or, for stride 1, conv2d with the flipped kernel.
  """
  import functools

  import tensorflow as tf

  from anogan_tf.nn.layers import conv2d_transpose_subpixel, subpixel_kernel
  b, r, timed = batch_size, _tensor_maker(), functools.partial(_fastest_ms, repeats=repeats)

  ops = {}
  for name, hw, cin, cout, stride in (("convT1", 7, 32, 16, 2), ("convT2", 14, 16, 8, 2), ("convT3", 28, 8, 1, 1)):
    kernel = r(3, 3, cout, cin)
    x, dy, out = r(b, hw, hw, cin), r(b, hw * stride, hw * stride, cout), (b, hw * stride, hw * stride, cout)
    forms = {"conv2d_transpose": timed(lambda x, k=kernel, o=out, s=stride: tf.nn.conv2d_transpose(x, k, o, s, "SAME"), x)}
    if stride == 2:
      forms["subpixel conv2d"] = timed(lambda x, k=subpixel_kernel(kernel): conv2d_transpose_subpixel(x, k), x)
    else:
      flipped = tf.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
      forms["conv2d, flipped kernel"] = timed(lambda x, k=flipped: tf.nn.conv2d(x, k, 1, "SAME"), x)
    ops[f"{name} forward"] = forms
    ops[f"{name} input gradient"] = {"conv2d": timed(lambda d, k=kernel, s=stride: tf.nn.conv2d(d, k, s, "SAME"), dy)}
  kernel = r(3, 3, 1, 16)
  ops["d_conv1 forward"] = {"conv2d": timed(lambda x: tf.nn.conv2d(x, kernel, 2, "SAME"), r(b, 28, 28, 1))}
  dy = r(b, 14, 14, 16)
  ops["d_conv1 input gradient"] = {
      "conv2d_transpose": timed(lambda d: tf.nn.conv2d_transpose(d, kernel, (b, 28, 28, 1), 2, "SAME"), dy),
      "subpixel conv2d": timed(lambda d, k=subpixel_kernel(kernel): conv2d_transpose_subpixel(d, k), dy)}
  return {"batch_size": b, "ops_ms": ops,
          "default_total_ms": round(sum(next(iter(forms.values())) for forms in ops.values()), 2),
          "fastest_total_ms": round(sum(min(forms.values()) for forms in ops.values()), 2)}


# How often one training batch (1 D step + 2 G steps, seed 000) runs each convolution: G's
# forward twice (the D step and the first G step share one); D's forward on real and fake in the D step and on fake in each G
# step; the D step's gradients to D's kernels (and conv2's input, to reach conv1); each G step's
# gradients through D's input to G's kernels.
TRAINING_CONV_CALLS = {
    "convT1 forward": 2, "convT2 forward": 2, "convT3 forward": 2, "d_conv1 forward": 4, "d_conv2 forward": 4,
    "d_conv1 kernel gradient": 2, "d_conv2 kernel gradient": 2, "d_conv2 input gradient": 4,
    "d_conv1 input gradient": 2, "convT3 input gradient": 2, "convT3 kernel gradient": 2,
    "convT2 input gradient": 2, "convT2 kernel gradient": 2, "convT1 input gradient": 2, "convT1 kernel gradient": 2,
}


def measure_training_layers(batch_size=256, repeats=15):
  """Milliseconds per call of each convolution a training batch runs (TRAINING_CONV_CALLS), alone."""
  import functools

  import tensorflow as tf

  from anogan_tf.nn.layers import conv2d_transpose_subpixel, subpixel_kernel
  b, r, timed = batch_size, _tensor_maker(), functools.partial(_fastest_ms, repeats=repeats)

  def kernel_gradient(op, x, kernel, dy):
    with tf.GradientTape() as tape:
      tape.watch(kernel)
      y = op(x, kernel)
    return tape.gradient(y, kernel, output_gradients=dy)

  ops = {}
  for name, hw, cin, cout, stride in (("convT1", 7, 32, 16, 2), ("convT2", 14, 16, 8, 2), ("convT3", 28, 8, 1, 1)):
    out = (b, hw * stride, hw * stride, cout)
    kernel, x, dy = r(3, 3, cout, cin), r(b, hw, hw, cin), r(*out)
    op = lambda x, k, o=out, s=stride: tf.nn.conv2d_transpose(x, k, o, s, "SAME")
    ops[f"{name} forward"] = {"default": timed(op, x, kernel)}
    if stride == 2:
      ops[f"{name} forward"]["subpixel conv2d"] = timed(lambda x, k: conv2d_transpose_subpixel(x, k), x, subpixel_kernel(kernel))
    ops[f"{name} input gradient"] = {"default": timed(lambda d, k, s=stride: tf.nn.conv2d(d, k, s, "SAME"), dy, kernel)}
    ops[f"{name} kernel gradient"] = {"default": timed(lambda x, k, d, op=op: kernel_gradient(op, x, k, d), x, kernel, dy)}
  for name, hw, cin, cout in (("d_conv1", 28, 1, 16), ("d_conv2", 14, 16, 32)):
    kernel, x, dy = r(3, 3, cin, cout), r(b, hw, hw, cin), r(b, hw // 2, hw // 2, cout)
    op = lambda x, k: tf.nn.conv2d(x, k, 2, "SAME")
    ops[f"{name} forward"] = {"default": timed(op, x, kernel)}
    ops[f"{name} input gradient"] = {
        "default": timed(lambda d, k, hw=hw, cin=cin: tf.nn.conv2d_transpose(d, k, (b, hw, hw, cin), 2, "SAME"), dy, kernel),
        "subpixel conv2d": timed(lambda d, k: conv2d_transpose_subpixel(d, k), dy, subpixel_kernel(kernel))}
    ops[f"{name} kernel gradient"] = {"default": timed(lambda x, k, d, op=op: kernel_gradient(op, x, k, d), x, kernel, dy)}
  total = sum(TRAINING_CONV_CALLS[op] * forms["default"] for op, forms in ops.items())
  return {"batch_size": b, "ops_ms": ops, "batch_total_ms": round(total, 2),
          "threads": int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))}


def _fastest_by_op(runs: dict, cores: int) -> dict:
  """For each convolution, the fastest time any run measured (any form, oneDNN on or off); a
  one-thread time is divided by the cores (perfect scaling over processes)."""
  best = {}
  for label, run in runs.items():
    share = cores if run["threads"] == 1 else 1
    for op, forms in run["ops_ms"].items():
      for form, ms in forms.items():
        if op not in best or ms / share < best[op]["effective_ms"]:
          best[op] = {"effective_ms": round(ms / share, 2), "form": form, "run": label}
  return best


def _one_process_ms(runs: dict, calls) -> dict:
  """The fastest one process can be: oneDNN is on or off for all its ops, and each op gets
  TensorFlow's intra-op threads. Per run with the default threads, the fastest form of each
  convolution times its calls, summed; the smallest such sum."""
  totals = {label: sum(calls(op) * min(forms.values()) for op, forms in run["ops_ms"].items())
            for label, run in runs.items() if run["threads"] != 1}
  label = min(totals, key=totals.get)
  return {"run": label, "ms": round(totals[label], 2)}


def kernel_ceiling(layer_runs: dict, cores: int) -> dict:
  """The fastest mapping TensorFlow's kernels allow: the fastest time of each convolution
  (_fastest_by_op) summed, with everything else free. An upper bound; `one_process` is the
  tighter one for a single process (_one_process_ms)."""
  best = _fastest_by_op(layer_runs, cores)
  total_ms = sum(v["effective_ms"] for v in best.values())
  batch = next(iter(layer_runs.values()))["batch_size"]
  one = _one_process_ms(layer_runs, lambda op: 1)
  one["images_per_second"] = round(batch / (one["ms"] / 1000) / STEPS, 1)
  return {"by_op": best, "convolutions_ms_per_iteration": round(total_ms, 2),
          "images_per_second": round(batch / (total_ms / 1000) / STEPS, 1), "one_process": one}


def training_ceiling(runs: dict, cores: int) -> dict:
  """As kernel_ceiling, for one training batch: each fastest time times its TRAINING_CONV_CALLS."""
  best = _fastest_by_op(runs, cores)
  total_ms = sum(TRAINING_CONV_CALLS[op] * v["effective_ms"] for op, v in best.items())
  batch = next(iter(runs.values()))["batch_size"]
  one = _one_process_ms(runs, TRAINING_CONV_CALLS.get)
  one["images_per_second"] = round(batch / (one["ms"] / 1000), 1)
  return {"by_op": best, "convolutions_ms_per_batch": round(total_ms, 2),
          "images_per_second": round(batch / (total_ms / 1000), 1), "one_process": one}


def flops_per_image_iteration():
  """Multiply-adds of one mapping iteration, from the seed-000 layer shapes (2 FLOPs per MAC).

  Forward: Dense 50->1568, ConvT 7x7x32->14x14x16, ConvT 14x14x16->28x28x8, ConvT 28x28x8->28x28x1
  (transposed conv MACs = input pixels x k*k x c_in x c_out), D's conv1 28x28x1->14x14x16 on G(z).
  Backward to z only (G and D are frozen): each layer's input gradient costs what its forward does;
  no weight gradients are computed. Elementwise ops (BN, LeakyReLU, tanh, L1) are left out.
  """
  forward = {"dense": 50 * 1568, "convT1": 7 * 7 * 9 * 32 * 16, "convT2": 14 * 14 * 9 * 16 * 8,
             "convT3": 28 * 28 * 9 * 8 * 1, "d_conv1": 14 * 14 * 9 * 1 * 16}
  macs_forward = sum(forward.values())
  macs = 2 * macs_forward
  return {"macs_forward": macs_forward, "macs_forward_by_layer": forward, "flops": 2 * macs,
          "method": "derived from layer shapes: forward + input-gradient backward, 2 FLOPs per MAC"}


def cpu_peak_gflops():
  """FP32 peak = cores x clock x FLOPs/cycle (AVX2+FMA: 2 FMA pipes x 8 lanes x 2 = 32)."""
  info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
  model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.processor())
  mhz = [float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
  flags_line = next((line for line in info.splitlines() if line.startswith("flags")), "")
  per_cycle = 64 if "avx512f" in flags_line else 32 if ("avx2" in flags_line and "fma" in flags_line) else 8
  cores = os.cpu_count() or 1
  ghz = (max(mhz) / 1000) if mhz else 2.0
  return {"cpu": model, "cores": cores, "ghz": round(ghz, 3), "flops_per_cycle_per_core": per_cycle,
          "peak_gflops": round(cores * ghz * per_cycle, 1)}


def _child(spec: str):
  kind, *args = spec.split(":")
  if args and args[-1] == "bf16":
    PRECISION["value"] = "bfloat16"
    args = args[:-1]
  if args and args[-1] == "keras_bn":
    _use_keras_batchnorm()
    args = args[:-1]
  functions = {"mapping": lambda b, n, j="0": measure_mapping(int(b), int(n), j == "1"),
               "seed_style": lambda n: measure_seed_style(int(n)),
               "interleaved": lambda r, n: measure_interleaved(int(r), int(n)),
               "interleaved_training": lambda r, n="2560": measure_interleaved_training(int(r), n_images=int(n)),
               "whole_split": lambda n, b: measure_whole_split(int(n), int(b)),
               "pictures": lambda r, n="256": measure_pictures(int(r), int(n)),
               "training": lambda: measure_training(),
               "layers": lambda: {**measure_layers(), "threads": int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))},
               "training_layers": lambda: measure_training_layers(),
               "encoder": lambda: measure_encoder(),
               "torch_mapping": lambda b, n: _torch_peer().measure_mapping(int(b), int(n), PRECISION["value"] == "bfloat16"),
               "torch_training": lambda: _torch_peer().measure_training(PRECISION["value"] == "bfloat16")}
  result = functions[kind](*args)
  result.setdefault("precision", PRECISION["value"])
  print("BENCH" + json.dumps(result))


def _torch_peer():
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_peer
  return torch_peer


def _ratio(a: dict, b: dict) -> float:
  return round(a["images_per_second"] / b["images_per_second"], 2)


def bfloat16_rows(report: dict) -> dict:
  """Each float32 measurement again in bfloat16 (same run), the ratios, and the PyTorch peer."""
  import importlib.util

  from anogan_tf.utils import cpu
  out = {"cpu": cpu.cpu_model(), "cpu_bf16": cpu.bf16_support()}
  out["mapping_by_batch_size"] = [_run_child(f"mapping:{r['batch_size']}:{r['images']}:0:bf16")
                                  for r in report["mapping_by_batch_size"]]
  out["seed_style_one_by_one"] = _run_child(f"seed_style:{report['seed_style_one_by_one']['images']}:bf16")
  out["whole_test_split"] = _run_child(f"whole_split:{FLAGS.test_images}:0:bf16")  # its automatic batch
  out["training"] = _run_child("training:bf16")
  out["encoder"] = {"float32": report["encoder"], "bfloat16": _run_child("encoder:bf16")}
  out["convolutions_alone_batch_1024"] = _run_child("layers:bf16")
  out["training_convolutions_alone_batch_256"] = _run_child("training_layers:bf16")
  out["pictures"] = _run_child("pictures:3")
  if importlib.util.find_spec("torch") is None:
    out["pytorch"] = {"skipped": "torch is not installed (make bench installs it: pip install torch)"}
  else:
    # the peer maps at our batch of the same precision (the automatic one of each)
    batch32, batch16 = report["whole_test_split"]["batch_size"], out["whole_test_split"]["batch_size"]
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}  # OpenMP threads that sleep when idle: the fair setting on a shared CPU
    out["pytorch"] = {"mapping_float32": _run_child(f"torch_mapping:{batch32}:{max(batch32, 1024)}", passive),
                      "mapping_bfloat16": _run_child(f"torch_mapping:{batch16}:{max(batch16, 1024)}:bf16", passive),
                      "training_float32": _run_child("torch_training", passive),
                      "training_bfloat16": _run_child("torch_training:bf16", passive)}
  ours32, ours16 = report["whole_test_split"], out["whole_test_split"]
  one32, one16 = report["mapping_by_batch_size"][0], out["mapping_by_batch_size"][0]
  ratios = {
      "mapping_bf16_over_fp32": _ratio(ours16, ours32),
      "training_bf16_over_fp32": _ratio(out["training"], report["training"]),
      "encoder_bf16_over_fp32": _ratio(out["encoder"]["bfloat16"], out["encoder"]["float32"]),
      "mapping_by_batch_size_bf16_over_fp32": {str(a["batch_size"]): _ratio(b, a) for a, b in
                                               zip(report["mapping_by_batch_size"], out["mapping_by_batch_size"])},
      "batched_over_one_by_one_bf16": _ratio(ours16, one16),
      "batched_bf16_over_one_by_one_fp32": _ratio(ours16, one32),
      "batched_over_seed_style_bf16": _ratio(ours16, out["seed_style_one_by_one"]),
      "pictures_training_bf16_over_fp32": out["pictures"]["training"]["bf16_over_fp32_median"],
      "pictures_scoring_bf16_over_fp32": out["pictures"]["scoring"]["bf16_over_fp32_median"],
  }
  torch_rows = out["pytorch"]
  if "skipped" not in torch_rows:
    ratios.update({
        "mapping_fp32_over_pytorch_fp32": _ratio(ours32, torch_rows["mapping_float32"]),
        "mapping_bf16_over_pytorch_fp32": _ratio(ours16, torch_rows["mapping_float32"]),
        "mapping_bf16_over_pytorch_bf16": _ratio(ours16, torch_rows["mapping_bfloat16"]),
        "training_fp32_over_pytorch_fp32": _ratio(report["training"], torch_rows["training_float32"]),
        "training_bf16_over_pytorch_bf16": _ratio(out["training"], torch_rows["training_bfloat16"]),
    })
  convs32 = report["convolutions_alone_batch_1024"]["oneDNN on (the default)"]["ops_ms"]
  convs16 = out["convolutions_alone_batch_1024"]["ops_ms"]
  ratios["convolutions_fp32_ms_over_bf16_ms"] = {f"{op}, {form}": round(ms / convs16[op][form], 2)
                                                 for op, forms in convs32.items() for form, ms in forms.items()}
  train32 = report["training_convolutions_alone_batch_256"]["oneDNN on (the default)"]["ops_ms"]
  train16 = out["training_convolutions_alone_batch_256"]["ops_ms"]
  ratios["training_convolutions_fp32_ms_over_bf16_ms"] = {f"{op}, {form}": round(ms / train16[op][form], 2)
                                                          for op, forms in train32.items() for form, ms in forms.items()}
  out["ratios"] = ratios
  return out


def _run_child(spec: str, env=None) -> dict:
  """Each measurement in a fresh process: no shared caches, and its own peak RSS."""
  out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={spec}"], capture_output=True,
                       text=True, env={**os.environ, **(env or {})})
  lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH")]
  if out.returncode != 0 or not lines:
    raise RuntimeError(f"bench child {spec} failed:\n{out.stderr[-3000:]}")
  result = json.loads(lines[-1][5:])
  print(f"  {spec}: {result.get('images_per_second', result.get('fastest_total_ms', result.get('batch_total_ms')))}", flush=True)
  return result


def _run_children_together(specs, env=None) -> dict:
  """Runs the measurements at the same time, one process each; images/s of them all together."""
  procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--child={spec}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}) for spec in specs]
  results = []
  for spec, proc in zip(specs, procs):
    stdout, stderr = proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("BENCH")]
    if proc.returncode != 0 or not lines:
      raise RuntimeError(f"bench child {spec} failed:\n{stderr[-3000:]}")
    results.append(json.loads(lines[-1][5:]))
  images, seconds = sum(r["images"] for r in results), max(r["seconds"] for r in results)
  result = {"processes": results, "images": images, "seconds": seconds,
            "images_per_second": round(images / seconds, 3)}
  print(f"  {len(specs)} x {specs[0]} together: {result['images_per_second']}", flush=True)
  return result


# (key, child spec, environment) of the goals' run, in the order it runs them
GOAL_CHILDREN = (("split_fp32", "whole_split:{n}:0", None), ("split_bf16", "whole_split:{n}:0:bf16", None),
                 ("train_fp32", "training", None), ("train_bf16", "training:bf16", None),
                 ("one_fp32", "mapping:1:8", None), ("one_bf16", "mapping:1:8:bf16", None),
                 ("seed_fp32", "seed_style:4", None), ("seed_bf16", "seed_style:4:bf16", None),
                 ("pictures", "pictures:3", None))


def goals(n_images: int) -> dict:
  """Issue 25's goal rows in one run, each measurement in a fresh process (`_run_child`): the
  test split mapped at each precision's automatic batch, training, one image at a time (compiled
  loop, and the seed's way), then the PyTorch peer in float32 at our float32 batch and at our
  bfloat16 one, and in bfloat16 autocast at our bfloat16 batch; the ratios of `goal_ratios`."""
  import importlib.util

  from anogan_tf.utils import cpu
  report = {"command": "make bench-goals  (python benchmarks/bench.py --goals --output=" + FLAGS.output + ")",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": cpu_peak_gflops(), "cpu_bf16": cpu.bf16_support(),
            "mapping_iterations": STEPS, "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
  for key, spec, env in GOAL_CHILDREN:
    report[key] = _run_child(spec.format(n=n_images), env)
  if importlib.util.find_spec("torch") is None:
    report["pytorch"] = {"skipped": "torch is not installed (make bench-goals installs it: pip install torch)"}
  else:
    batch32, batch16 = report["split_fp32"]["batch_size"], report["split_bf16"]["batch_size"]
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}  # OpenMP threads that sleep when idle: the fair setting on a shared CPU
    report["torch_map_fp32"] = _run_child(f"torch_mapping:{batch32}:{max(batch32, 1024)}", passive)
    report["torch_map_bf16"] = _run_child(f"torch_mapping:{batch16}:{max(batch16, 1024)}:bf16", passive)
    report["torch_map_fp32_at_bf16_batch"] = _run_child(f"torch_mapping:{batch16}:{max(batch16, 1024)}", passive)
  report["ratios"] = goal_ratios(report)
  report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
  return report


def goal_ratios(r: dict) -> dict:
  """The goals' ratios from a `goals` report (PyTorch's only when it ran)."""
  ratios = {"mapping_bf16_over_fp32": _ratio(r["split_bf16"], r["split_fp32"]),
            "training_bf16_over_fp32": _ratio(r["train_bf16"], r["train_fp32"])}
  if "torch_map_fp32" in r:
    best_torch32 = max((r["torch_map_fp32"], r["torch_map_fp32_at_bf16_batch"]), key=lambda t: t["images_per_second"])
    ratios.update({"mapping_bf16_over_pytorch_fp32": _ratio(r["split_bf16"], r["torch_map_fp32"]),
                   "mapping_bf16_over_pytorch_fp32_same_batch": _ratio(r["split_bf16"], r["torch_map_fp32_at_bf16_batch"]),
                   "mapping_bf16_over_pytorch_fp32_best": _ratio(r["split_bf16"], best_torch32),
                   "mapping_bf16_over_pytorch_bf16": _ratio(r["split_bf16"], r["torch_map_bf16"]),
                   "mapping_fp32_over_pytorch_fp32": _ratio(r["split_fp32"], r["torch_map_fp32"])})
  for p in ("bf16", "fp32"):
    ratios[f"batched_over_one_by_one_{p}"] = _ratio(r[f"split_{p}"], r[f"one_{p}"])
    ratios[f"batched_over_seed_style_{p}"] = _ratio(r[f"split_{p}"], r[f"seed_{p}"])
  ratios["batched_bf16_over_seed_style_fp32"] = _ratio(r["split_bf16"], r["seed_fp32"])
  if "pictures" in r:
    for kind in ("training", "scoring"):
      ratios[f"pictures_{kind}_bf16_over_fp32"] = r["pictures"][kind]["bf16_over_fp32_median"]
  return ratios


def goals_lines(r: dict) -> list:
  """The .md of a `goals` report."""
  m, x = r["machine"], r["ratios"]
  lines = [f"# bfloat16 goals of issue 25 (one run, {r['date']})", "",
           f"Command: `{r['command']}`, at commit `{r.get('commit', '?')}`; wall time {r['wall_seconds']} s. "
           f"{m['cpu']}, {m['cores']} cores at {m['ghz']} GHz, bf16 support: **{r['cpu_bf16']}**. Load average (1, 5, "
           f"15 min; other jobs on the machine) at the start {r['load_average_at_start']}, at the end "
           f"{r['load_average_at_end']}: absolute images/s are those of this machine at that load; ratios are within the "
           f"run. Seed-000 networks, {r['mapping_iterations']} mapping iterations, each measurement in a fresh process.",
           "", "| measure | float32 | bfloat16 | bf16 / fp32 |", "| --- | --- | --- | --- |",
           f"| mapping {r['split_fp32']['images']} test images, automatic batch ({r['split_fp32']['batch_size']} / "
           f"{r['split_bf16']['batch_size']}) (images/s) | {r['split_fp32']['images_per_second']} | "
           f"{r['split_bf16']['images_per_second']} | {x['mapping_bf16_over_fp32']}x |",
           f"| training, batch {r['train_fp32']['batch_size']} (images/s) | {r['train_fp32']['images_per_second']} | "
           f"{r['train_bf16']['images_per_second']} | {x['training_bf16_over_fp32']}x |",
           f"| mapping one image at a time, compiled loop (images/s) | {r['one_fp32']['images_per_second']} | "
           f"{r['one_bf16']['images_per_second']} | |",
           f"| one image at a time, the seed's way: a call per step (images/s) | {r['seed_fp32']['images_per_second']} | "
           f"{r['seed_bf16']['images_per_second']} | |", ""]
  if "torch_map_fp32" in r:
    t32, t16, t32b = r["torch_map_fp32"], r["torch_map_bf16"], r["torch_map_fp32_at_bf16_batch"]
    lines += [f"PyTorch peer (benchmarks/torch_peer.py, torch {t32.get('torch', '?')}, same networks and schedule, "
              "OMP_WAIT_POLICY=PASSIVE):", "", "| PyTorch mapping | batch | images/s |", "| --- | --- | --- |",
              f"| float32 | {t32['batch_size']} | {t32['images_per_second']} |",
              f"| float32 | {t32b['batch_size']} | {t32b['images_per_second']} |",
              f"| bfloat16 autocast | {t16['batch_size']} | {t16['images_per_second']} |", ""]
  else:
    lines += [f"PyTorch peer: skipped ({r['pytorch']['skipped']}).", ""]
  rows = [("mapping bf16 / our fp32", f"{x['mapping_bf16_over_fp32']}x", ">= 3x"),
          ("training bf16 / our fp32", f"{x['training_bf16_over_fp32']}x", ">= 2x")]
  if "mapping_bf16_over_pytorch_fp32" in x:
    rows += [("mapping bf16 / PyTorch fp32 (at our fp32 batch; at the bf16 batch)",
              f"{x['mapping_bf16_over_pytorch_fp32']}x; {x['mapping_bf16_over_pytorch_fp32_same_batch']}x", ">= 4x"),
             ("mapping bf16 / PyTorch bf16 (same batch)", f"{x['mapping_bf16_over_pytorch_bf16']}x", "> 1x"),
             ("mapping fp32 / PyTorch fp32", f"{x['mapping_fp32_over_pytorch_fp32']}x", "")]
  rows += [("batched / one-by-one compiled, bf16; fp32",
            f"{x['batched_over_one_by_one_bf16']}x; {x['batched_over_one_by_one_fp32']}x", ">= 40x"),
           ("batched / the seed's way, bf16; fp32",
            f"{x['batched_over_seed_style_bf16']}x; {x['batched_over_seed_style_fp32']}x", ">= 40x"),
           ("batched bf16 / the seed's way in fp32", f"{x['batched_bf16_over_seed_style_fp32']}x", "")]
  lines += ["| ratio (same run) | measured | goal |", "| --- | --- | --- |"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
  return lines + [""] + pictures_lines(r.get("pictures"))


def pictures_lines(p) -> list:
  """The .md rows of a `measure_pictures` result (none without one)."""
  if not p:
    return []
  lines = [f"The picture preset's networks ({p['networks']}: DRAEM, {'x'.join(map(str, p['image_shape']))}), float32 "
           f"and bfloat16 taking turns in one process, {p['rounds']} rounds of {p['images']} {p['data']} pictures "
           f"(training batch {p['batch_size']['training']}; scoring at the automatic batch, "
           f"{p['batch_size']['scoring']['float32']} / {p['batch_size']['scoring']['bfloat16']}):", "",
           "| measure | float32 (images/s per round) | bfloat16 | bf16 / fp32 per round | median |",
           "| --- | --- | --- | --- | --- |"]
  for kind in ("training", "scoring"):
    k = p[kind]
    lines.append(f"| {kind} | {', '.join(map(str, k['images_per_second']['float32']))} | "
                 f"{', '.join(map(str, k['images_per_second']['bfloat16']))} | "
                 f"{', '.join(map(str, k['bf16_over_fp32_per_round']))} | {k['bf16_over_fp32_median']}x |")
  return lines + [""]


def main(argv):
  del argv
  if FLAGS.child:
    return _child(FLAGS.child)
  if FLAGS.goals:
    from anogan_tf.utils.files import write_text
    began = time.perf_counter()
    report = goals(FLAGS.test_images)
    report["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    report["wall_seconds"] = round(time.perf_counter() - began, 1)
    os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
    write_text(FLAGS.output + ".json", json.dumps(report, indent=2) + "\n")
    write_text(FLAGS.output + ".md", "\n".join(goals_lines(report)))
    print("\n".join(goals_lines(report)))
    return
  began = time.perf_counter()
  report = {"command": "make bench  (python benchmarks/bench.py --output=" + FLAGS.output + ")",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": cpu_peak_gflops(),
            "mapping_iterations": STEPS, "networks": "seed 000 (28x28x1)"}
  import tensorflow as tf
  report["tensorflow"] = tf.__version__
  report["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]  # other jobs on this machine
  report["mapping_by_batch_size"] = [_run_child(f"mapping:{b}:{n}") for b, n in
                                     ((1, 8), (64, 256), (256, 1024), (1024, 2048))]
  report["seed_style_one_by_one"] = _run_child("seed_style:4")
  report["whole_test_split"] = _run_child(f"whole_split:{FLAGS.test_images}:0")  # the automatic batch, as evaluate
  onednn_off = {"TF_ENABLE_ONEDNN_OPTS": "0"}
  report["options"] = {
      "mapping, batch 1024": report["mapping_by_batch_size"][-1],
      "mapping, batch 1024, oneDNN off (TensorFlow's default on this CPU)": _run_child("mapping:1024:1024", onednn_off),
      "mapping, batch 1024, XLA (jit_compile)": _run_child("mapping:1024:1024:1"),
      "mapping, batch 1024, 1 intra-op thread": _run_child("mapping:1024:1024", {"TF_NUM_INTRAOP_THREADS": "1"}),
      "mapping, 2 processes x 1 thread, batch 512 each": _run_children_together(
          ["mapping:512:1024"] * 2, {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}),
      "mapping, batch 1024, Keras' BatchNormalization (not fused)": _run_child("mapping:1024:1024:0:keras_bn"),
      "training, batch 256, oneDNN off": _run_child("training", onednn_off),
      "training, batch 256, Keras' BatchNormalization (not fused)": _run_child("training:keras_bn"),
      "training, batch 256, 1 intra-op thread, 2 inter-op threads (independent ops side by side)": _run_child(
          "training", {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"}),
  }
  report["training"] = _run_child("training")
  report["encoder"] = _run_child("encoder")
  one_thread = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
  settings = {"oneDNN on (the default)": {}, "oneDNN off": onednn_off, "oneDNN on, 1 thread": one_thread,
              "oneDNN off, 1 thread": {**onednn_off, **one_thread}}
  report["convolutions_alone_batch_1024"] = {label: _run_child("layers", env) for label, env in settings.items()}
  report["kernel_ceiling"] = kernel_ceiling(report["convolutions_alone_batch_1024"], report["machine"]["cores"])
  report["training_convolutions_alone_batch_256"] = {label: _run_child("training_layers", env)
                                                     for label, env in settings.items()}
  report["training_ceiling"] = training_ceiling(report["training_convolutions_alone_batch_256"], report["machine"]["cores"])
  flops = flops_per_image_iteration()
  report["flops_per_image_iteration"] = flops
  split = report["whole_test_split"]
  single = report["mapping_by_batch_size"][0]["images_per_second"]
  achieved = split["images_per_second"] * (STEPS * flops["flops"] + flops["flops"] / 2) / 1e9
  report["summary"] = {
      "batched_over_one_by_one_compiled": round(split["images_per_second"] / single, 1),
      "batched_over_seed_style": round(split["images_per_second"] / report["seed_style_one_by_one"]["images_per_second"], 1),
      "test_split_images_per_second": split["images_per_second"],
      "training_images_per_second": report["training"]["images_per_second"],
      "mapping_gflops": round(achieved, 2),
      "fraction_of_fp32_peak": round(achieved / report["machine"]["peak_gflops"], 4),
      "test_split_peak_rss_mb": split["peak_rss_mb"],
      "onednn_speedup_mapping": round(report["mapping_by_batch_size"][-1]["images_per_second"]
                                      / report["options"]["mapping, batch 1024, oneDNN off (TensorFlow's default on this CPU)"]["images_per_second"], 2),
      "onednn_speedup_training": round(report["training"]["images_per_second"]
                                       / report["options"]["training, batch 256, oneDNN off"]["images_per_second"], 2),
      "fused_bn_speedup_mapping": round(report["mapping_by_batch_size"][-1]["images_per_second"]
                                        / report["options"]["mapping, batch 1024, Keras' BatchNormalization (not fused)"]["images_per_second"], 2),
      "fused_bn_speedup_training": round(report["training"]["images_per_second"]
                                         / report["options"]["training, batch 256, Keras' BatchNormalization (not fused)"]["images_per_second"], 2),
  }
  report["bfloat16"] = bfloat16_rows(report)
  report["wall_seconds"] = round(time.perf_counter() - began, 1)
  report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
  write_reports(report, FLAGS.output)


def bfloat16_lines(report: dict) -> list:
  """The .md section of the bfloat16 rows and the PyTorch peer."""
  b = report["bfloat16"]
  r = b["ratios"]
  lines = ["## bfloat16 (--precision=bfloat16), same run", "",
           f"CPU: {b['cpu']}; bf16 support: **{b['cpu_bf16']}** (anogan_tf.utils.cpu, from /proc/cpuinfo).", "",
           "| measure | float32 | bfloat16 | bf16 / fp32 |", "| --- | --- | --- | --- |"]
  for a, c in zip(report["mapping_by_batch_size"], b["mapping_by_batch_size"]):
    lines.append(f"| mapping, batch {a['batch_size']} (images/s) | {a['images_per_second']} | {c['images_per_second']} "
                 f"| {_ratio(c, a)}x |")
  batches = f"batch {report['whole_test_split']['batch_size']} / {b['whole_test_split']['batch_size']}"
  pairs = (("mapping the test split, automatic " + batches, report["whole_test_split"], b["whole_test_split"]),
           ("one by one, seed's way", report["seed_style_one_by_one"], b["seed_style_one_by_one"]),
           ("training, batch 256", report["training"], b["training"]),
           ("encoder pass, batch 1024", b["encoder"]["float32"], b["encoder"]["bfloat16"]))
  lines += [f"| {name} (images/s) | {x['images_per_second']} | {y['images_per_second']} | {_ratio(y, x)}x |"
            for name, x, y in pairs]
  t = b["pytorch"]
  if "skipped" in t:
    lines += ["", f"PyTorch peer: skipped ({t['skipped']})."]
  else:
    lines += ["", f"PyTorch peer (benchmarks/torch_peer.py, torch {t['mapping_float32']['torch']}, same networks and "
              "schedule, each in a fresh process of this run):", "",
              "| measure | PyTorch fp32 | PyTorch bf16 autocast | ours fp32 | ours bf16 |", "| --- | --- | --- | --- | --- |",
              f"| mapping, fp32 / bf16 {batches} (images/s) | {t['mapping_float32']['images_per_second']} | "
              f"{t['mapping_bfloat16']['images_per_second']} | {report['whole_test_split']['images_per_second']} | "
              f"{b['whole_test_split']['images_per_second']} |",
              f"| training, batch 256 (images/s) | {t['training_float32']['images_per_second']} | "
              f"{t['training_bfloat16']['images_per_second']} | {report['training']['images_per_second']} | "
              f"{b['training']['images_per_second']} |"]
  goals = [("mapping bf16 / our fp32", "mapping_bf16_over_fp32", ">= 3x"),
           ("training bf16 / our fp32", "training_bf16_over_fp32", ">= 2x"),
           ("mapping bf16 / PyTorch fp32", "mapping_bf16_over_pytorch_fp32", ">= 4x"),
           ("mapping bf16 / PyTorch bf16", "mapping_bf16_over_pytorch_bf16", "> 1x"),
           ("batched / one-by-one, both bf16", "batched_over_one_by_one_bf16", ">= 40x"),
           ("batched bf16 / one-by-one fp32", "batched_bf16_over_one_by_one_fp32", ">= 40x"),
           ("training fp32 / PyTorch fp32", "training_fp32_over_pytorch_fp32", ""),
           ("training bf16 / PyTorch bf16", "training_bf16_over_pytorch_bf16", "")]
  lines += ["", "| ratio (same run) | measured | goal |", "| --- | --- | --- |"]
  lines += [f"| {name} | {r[key]}x | {goal} |" for name, key, goal in goals if key in r]
  lines += ["", "Convolutions alone, float32 ms / bfloat16 ms (oneDNN on; mapping at batch 1024, training at 256):", "",
            "| convolution, form | mapping | training |", "| --- | --- | --- |"]
  mapping, training = r["convolutions_fp32_ms_over_bf16_ms"], r["training_convolutions_fp32_ms_over_bf16_ms"]
  lines += [f"| {op} | {mapping.get(op, '')} | {training.get(op, '')} |" for op in dict.fromkeys(list(mapping) + list(training))]
  return lines + [""] + pictures_lines(b.get("pictures"))


def _one_process_sentence(one: dict, unit: str) -> str:
  return (f"One process running its ops one at a time, each on TensorFlow's intra-op threads, with oneDNN on "
          f"or off for all of them and the fastest form of each convolution, spends at least {one['ms']} ms per "
          f"{unit} in convolutions (run: {one['run']}): at most **{one['images_per_second']} images/s**. "
          f"(Independent ops side by side on one thread each, the other way to use both cores, is weighed "
          f"in the options above.)")


def write_reports(report: dict, prefix: str):
  from anogan_tf.utils.files import write_text
  os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
  write_text(prefix + ".json", json.dumps(report, indent=2) + "\n")
  s, m = report["summary"], report["machine"]
  targets = [("batched / one-by-one (compiled, batch 1)", f"{s['batched_over_one_by_one_compiled']}x", ">= 40x"),
             ("batched / one-by-one (seed's way: a call per step)", f"{s['batched_over_seed_style']}x", ">= 40x"),
             ("mapping the test split", f"{s['test_split_images_per_second']} images/s", ">= 150"),
             ("training, batch 256", f"{s['training_images_per_second']} images/s", ">= 4,000"),
             ("fraction of FP32 peak while mapping", f"{100 * s['fraction_of_fp32_peak']:.1f}% ({s['mapping_gflops']} GFLOP/s of {m['peak_gflops']})", ">= 35%"),
             ("peak RSS mapping the test split", f"{s['test_split_peak_rss_mb']} MB", "< 1,500 MB"),
             ("oneDNN on / off (mapping, training)", f"{s['onednn_speedup_mapping']}x, {s['onednn_speedup_training']}x", ""),
             ("fused / Keras' BatchNormalization (mapping, training)",
              f"{s['fused_bn_speedup_mapping']}x, {s['fused_bn_speedup_training']}x", "")]
  lines = [f"# Benchmark ({report['date']})", "",
           f"Command: `{report['command']}`; wall time {report['wall_seconds']} s; TensorFlow {report['tensorflow']}; "
           f"{m['cpu']}, {m['cores']} cores at {m['ghz']} GHz, peak {m['peak_gflops']} GFLOP/s "
           f"({m['flops_per_cycle_per_core']} FP32 FLOPs/cycle/core). Seed-000 networks, {report['mapping_iterations']} iterations. "
           f"Load average (1, 5, 15 min; other jobs on the machine) at the start {report.get('load_average_at_start')}, "
           f"at the end {report.get('load_average_at_end')}.", "",
           "| measure | reached | target |", "| --- | --- | --- |"]
  lines += [f"| {a} | {b} | {c} |" for a, b, c in targets]
  lines += ["", "Mapping throughput by batch size (compiled loop):", "", "| batch | images | images/s |", "| --- | --- | --- |"]
  lines += [f"| {r['batch_size']} | {r['images']} | {r['images_per_second']} |" for r in report["mapping_by_batch_size"]]
  lines += ["", "Options weighed (each in a fresh process, same run):", "", "| option | images/s |", "| --- | --- |"]
  lines += [f"| {name} | {r['images_per_second']} |" for name, r in report["options"].items()]
  runs = report["convolutions_alone_batch_1024"]
  per_iteration_ms = 1000 * 1024 / report["mapping_by_batch_size"][-1]["images_per_second"] / report["mapping_iterations"]
  labels = list(runs)
  lines += ["", f"Convolutions timed alone at batch 1024 (ms per call, fastest of 15; one whole mapping iteration "
            f"at batch 1024 takes {per_iteration_ms:.0f} ms in the default setting):", "",
            "| convolution | form | " + " | ".join(labels) + " |", "| --- | --- |" + " --- |" * len(labels)]
  first = runs[labels[0]]["ops_ms"]
  for op, forms in first.items():
    for form in forms:
      lines.append(f"| {op} | {form} | " + " | ".join(str(runs[k]["ops_ms"][op][form]) for k in labels) + " |")
  lines.append("| all, default forms | | " + " | ".join(str(runs[k]["default_total_ms"]) for k in labels) + " |")
  lines.append("| all, fastest form each | | " + " | ".join(str(runs[k]["fastest_total_ms"]) for k in labels) + " |")
  c = report["kernel_ceiling"]
  lines += ["", f"Ceiling: the fastest time any of these runs measured for each convolution (a one-thread time "
            f"divided by {report['machine']['cores']}, for perfect scaling over processes), summed, with everything "
            f"else free: {c['convolutions_ms_per_iteration']} ms per iteration at batch 1024, so mapping with "
            f"TensorFlow's kernels cannot exceed **{c['images_per_second']} images/s** on this machine "
            f"({100 * c['images_per_second'] * STEPS * report['flops_per_image_iteration']['flops'] / 1e9 / report['machine']['peak_gflops']:.1f}% of FP32 peak).",
            "", _one_process_sentence(c["one_process"], "iteration")]
  runs = report["training_convolutions_alone_batch_256"]
  labels = list(runs)
  lines += ["", "Convolutions of one training batch timed alone at batch 256 (ms per call, fastest of 15; calls = "
            "how often one batch, 1 D step + 2 G steps, runs each):", "",
            "| convolution | form | calls | " + " | ".join(labels) + " |", "| --- | --- | --- |" + " --- |" * len(labels)]
  for op, calls in TRAINING_CONV_CALLS.items():
    for form in runs[labels[0]]["ops_ms"][op]:
      lines.append(f"| {op} | {form} | {calls} | " + " | ".join(str(runs[k]["ops_ms"][op][form]) for k in labels) + " |")
  lines.append("| one batch, all calls, default forms | | | " + " | ".join(str(runs[k]["batch_total_ms"]) for k in labels) + " |")
  c = report["training_ceiling"]
  lines += ["", f"Ceiling, computed the same way: {c['convolutions_ms_per_batch']} ms of convolutions per batch of 256, "
            f"so training with TensorFlow's kernels cannot exceed **{c['images_per_second']} images/s** here.",
            "", _one_process_sentence(c["one_process"], "batch")]
  f = report["flops_per_image_iteration"]
  lines += ["", f"FLOPs per image-iteration: {f['flops']:,} ({f['method']}; forward MACs by layer: "
            + ", ".join(f"{k} {v:,}" for k, v in f["macs_forward_by_layer"].items()) + ").", ""]
  if "bfloat16" in report:
    lines += bfloat16_lines(report)
  write_text(prefix + ".md", "\n".join(lines))
  print("\n".join(lines))


if __name__ == "__main__":
  # The commands' kernels (anogan_tf._choose_onednn), which the library leaves to its host program:
  # "oneDNN on (the default)" measures what `python -m anogan_tf.*` runs.
  if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  app.run(main)
