"""Where a training epoch's time goes, per TensorFlow op, in float32 and in bfloat16 (one process).

  python benchmarks/profile_training.py [--images=2560] [--batch_size=256]

Seed-000 networks (AnoGAN's Driver, one per precision), MNIST test images (or noise without the
data folder). After two traced and warmed-up epochs each, one epoch per precision runs under
tf.profiler; its XPlane's op events (those of the compiled epoch's loop body) are grouped by op
type. Per op the time is its fastest run of the epoch times its number of runs, which discounts
some of the moments a shared machine takes the core away; the op counts are exact. Prints a
Markdown table, largest first. Not part of the installed package (as bench.py).
"""

from __future__ import annotations

import collections
import glob
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("images", 2560, "Images per profiled epoch.")
flags.DEFINE_integer("batch_size", 256, "Training batch size.")
FLAGS = flags.FLAGS
PRECISIONS = ("float32", "bfloat16")


def op_times(driver, x, epoch: int, logdir: str) -> dict:
  """{op type: [ms, runs]} of one profiled epoch."""
  import numpy as np
  import tensorflow as tf
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  tf.profiler.experimental.start(logdir)
  driver.train_epoch(x, epoch)
  tf.profiler.experimental.stop()
  space = xplane_pb2.XSpace()
  with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
    space.ParseFromString(f.read())
  runs = collections.defaultdict(list)  # op name: durations (ms)
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if name.startswith("while/") and ":" in name:  # ops of the epoch loop's body, "name:type"
          runs[name].append(event.duration_ps / 1e9)
  by_type = collections.defaultdict(lambda: [0.0, 0])
  for name, durations in runs.items():
    kind = name.rsplit(":", 1)[1].replace("_MklNative", "").replace("_Mkl", "")
    by_type[kind][0] += float(np.min(durations)) * len(durations)
    by_type[kind][1] += len(durations)
  return by_type


def main(_):
  import tensorflow as tf

  from anogan_tf import Config
  from anogan_tf.engine.driver import Driver
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from bench import _images  # its flags are bench's own, apart from these
  x = tf.constant(_images(FLAGS.images)[0])
  drivers = {name: Driver(Config(batch_size=FLAGS.batch_size, precision=name)) for name in PRECISIONS}
  for driver in drivers.values():
    driver.train_epoch(x, 0), driver.train_epoch(x, 1)  # trace, warm up
  with tempfile.TemporaryDirectory() as folder:
    times = {name: op_times(driver, x, 2, os.path.join(folder, name)) for name, driver in drivers.items()}
  kinds = sorted(set().union(*times.values()), key=lambda k: -max(t.get(k, [0, 0])[0] for t in times.values()))
  print(f"Ops of one training epoch of {FLAGS.images} images, batch {FLAGS.batch_size}: ms (runs)\n")
  print("| op | " + " | ".join(PRECISIONS) + " |\n| --- | " + " | ".join("---" for _ in PRECISIONS) + " |")
  for kind in kinds:
    cells = [times[name].get(kind, [0.0, 0]) for name in PRECISIONS]
    if max(ms for ms, _ in cells) >= 1:
      print(f"| {kind} | " + " | ".join(f"{ms:.0f} ({n})" for ms, n in cells) + " |")
  print("| all ops | " + " | ".join(f"{sum(ms for ms, _ in times[name].values()):.0f}" for name in PRECISIONS) + " |")


if __name__ == "__main__":
  app.run(main)
