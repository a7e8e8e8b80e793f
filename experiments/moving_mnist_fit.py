"""How fast the ConvLSTM autoencoder fits Moving MNIST training clips: a quick check of the training
loss and the reconstructions, no labels, no test clips (what the preset's network was diagnosed with).

  python experiments/moving_mnist_fit.py --steps=300 --name=layer_norm
  python experiments/moving_mnist_fit.py --steps=100 --no_norm --name=no_norm
  python experiments/moving_mnist_fit.py --steps=150 --lstm= --name=no_convlstm

Trains anogan_tf's SpatioTemporalAutoencoder (the preset's sizes unless told) on --clips normal
training clips (--seed's stream, MNIST's training digits 0-7), one 10-frame window per clip and step,
Adam, the squared error summed over the window's pixels (the family's loss); prints the training
loss per frame every --every steps, then the loss of 16 clips kept out of training beside that of an
empty reconstruction (every pixel background), and saves their first windows and reconstructions
(every third frame) to OUT/NAME.png. --no_norm replaces the LayerNormalization after each ConvLSTM2D
by the identity (the network before it had one); --lstm= leaves the ConvLSTMs out (a per-frame
autoencoder with the same convolutions).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--clips", type=int, default=300)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--filters", default="32,32")
  parser.add_argument("--strides", default="4,2")
  parser.add_argument("--lstm", default="64,32,64")
  parser.add_argument("--no_norm", action="store_true")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--every", type=int, default=50)
  parser.add_argument("--name", default="fit")
  parser.add_argument("--out", default="/tmp/moving_mnist_fit")
  parser.add_argument("--data_dir", default=os.environ.get("ANOGAN_DATA_DIR", ""))
  args = parser.parse_args()
  import keras
  import tensorflow as tf
  from PIL import Image

  from anogan_tf.data import moving_mnist
  from anogan_tf.data.arrays import load_arrays
  from anogan_tf.models.convlstm_ae import SpatioTemporalAutoencoder, frame_errors
  keras.utils.set_random_seed(args.seed)
  (digits, labels), _ = load_arrays("mnist", args.data_dir or None)
  normal = np.isin(labels, range(8))
  clips, _, _ = moving_mnist.make_clips([args.seed, 0], args.clips, 0, digits[normal], digits[~normal], 20)
  x = clips.astype(np.float32)[..., None] / 127.5 - 1
  held, x = x[:16], x[16:]
  ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
  model = SpatioTemporalAutoencoder(filters=ints(args.filters), strides=ints(args.strides), lstm_filters=ints(args.lstm))
  if args.no_norm:
    model.norm_layers = [lambda h: h] * len(model.lstm_layers)
  adam = keras.optimizers.Adam(args.lr)
  window = 10

  @tf.function
  def step(xb, u):
    starts = tf.minimum(tf.cast(tf.floor(u * (20 - window + 1)), tf.int32), 20 - window)
    windows = tf.gather(xb, starts[:, None] + tf.range(window)[None], batch_dims=1)
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.reduce_sum(frame_errors(windows, model(windows, linear=True), "l2"), axis=1))
    grads = tape.gradient(loss, model.trainable_variables)
    adam.apply_gradients(zip(grads, model.trainable_variables))
    return loss / window

  rng = np.random.default_rng(args.seed)
  began, losses = time.time(), []
  for s in range(1, args.steps + 1):
    xb = x[rng.integers(0, len(x), args.batch)]
    losses.append(float(step(tf.constant(xb), tf.constant(rng.uniform(0, 1, len(xb)).astype(np.float32)))))
    if s % args.every == 0:
      print(f"{args.name} step {s} loss per frame {np.mean(losses[-args.every:]):.0f} "
            f"({time.time() - began:.0f} s)", flush=True)
  out = model(tf.constant(held[:, :window])).numpy()
  record = {"name": args.name, "steps": args.steps,
            "held_loss_per_frame": round(float(np.mean(np.sum((held[:, :window] - out) ** 2, axis=(2, 3, 4)))), 1),
            "empty_loss_per_frame": round(float(np.mean(np.sum((held + 1) ** 2, axis=(2, 3, 4)))), 1),
            "seconds": round(time.time() - began, 1)}
  print(json.dumps(record), flush=True)
  rows = [np.concatenate(list(v[i, ::3, :, :, 0]), axis=1) for v in (held[:, :window], out) for i in range(3)]
  os.makedirs(args.out, exist_ok=True)
  grid = np.concatenate([np.concatenate(rows[:3], axis=1), np.concatenate(rows[3:], axis=1)], axis=0)
  Image.fromarray(((grid + 1) * 127.5).clip(0, 255).astype(np.uint8)).save(os.path.join(args.out, f"{args.name}.png"))


if __name__ == "__main__":
  main()
