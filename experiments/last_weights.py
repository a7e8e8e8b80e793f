"""A trained workdir's last weights as a workdir of their own: the paired half of an --ema_momentum study.

  python experiments/last_weights.py --workdir=RUNS/draem_ema/grass_seed6 --out=RUNS/draem_emalast/grass_seed6

A run with --ema_momentum exports the moving average of its weights, and its last checkpoint holds
the weights it ended on. This writes those last weights, restored from that checkpoint and not
averaged, as the networks' .keras files of OUT, beside a copy of the workdir's flags.txt,
history.csv and train_record.json (no checkpoint, no threshold.json: the threshold was computed on
the average). Evaluating both workdirs compares the two sets of weights of the same training run,
free of the run-to-run spread of training (experiments/pictures.py evaluates OUT as a preset's
workdir: it trains nothing where train_record.json exists).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

COPIED = ("flags.txt", "history.csv", "train_record.json")


def write_last_weights(workdir: str, out: str) -> list:
  """OUT's .keras files from WORKDIR's last checkpoint; returns the paths written."""
  from anogan_tf.cli.flags import workdir_config
  from anogan_tf.engine import checkpoints
  from anogan_tf.engine.driver import GAN_LOOP, Driver
  from anogan_tf.errors import AnoganError
  from anogan_tf.utils.files import atomic_path

  config = workdir_config(workdir)  # a damaged flags.txt: its one-line error
  if config is None:
    raise AnoganError(f"{workdir} has no flags.txt; name a trained workdir")
  driver = Driver(config)
  epochs = checkpoints.restore_checkpoint(driver, os.path.join(workdir, GAN_LOOP.checkpoints))
  if epochs != config.epochs:
    raise AnoganError(f"{workdir} has trained {epochs} of its {config.epochs} epochs; let its training finish")
  os.makedirs(out, exist_ok=True)
  for name in COPIED:
    if os.path.exists(os.path.join(workdir, name)):
      shutil.copyfile(os.path.join(workdir, name), os.path.join(out, name))
  written = []
  for name in driver.family.NETWORKS:
    path = os.path.join(out, f"{name}.keras")
    with atomic_path(path) as tmp:
      driver.networks[name].save(tmp)
    written.append(path)
  return written


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a finished training run's workdir")
  parser.add_argument("--out", required=True, help="the workdir to write (made when missing)")
  args = parser.parse_args(argv)
  from anogan_tf.errors import AnoganError
  try:
    for path in write_last_weights(args.workdir, args.out):
      print(path)
  except AnoganError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
