"""A workdir's locks (one train, one evaluate at a time; the kernel drops them when the process
dies) and loading its trained networks and scorer."""

from __future__ import annotations

import os
import zipfile
from typing import List

from anogan_tf.config import Config
from anogan_tf.errors import AnoganError
from anogan_tf.utils.files import DirectoryLock


def lock_workdir(workdir: str) -> DirectoryLock:
  return DirectoryLock(workdir, f"another train is running on {workdir}; wait for it to finish "
                                "(or stop it) before training there again, or use another --workdir")


def _same_folder(fd: int, path: str) -> bool:
  try:
    held, now = os.fstat(fd), os.stat(path)
  except OSError:
    return False
  return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def create_and_lock_workdir(workdir: str):
  """Creates the workdir if it does not exist and locks it, before anything in it is checked,
  cleaned or written; returns (lock, the folders created here, outermost first).

  A run that fails removes the folders it created while it still holds the lock (they are empty
  unless it wrote), so a second run may lock a folder that is gone by then: that lock is dropped
  and taken again on the new folder.
  """
  for _ in range(10):
    missing, parent = [], os.path.abspath(workdir)
    while not os.path.exists(parent):
      missing.insert(0, parent)
      parent = os.path.dirname(parent)
    try:
      os.makedirs(workdir, exist_ok=True)
      lock = lock_workdir(workdir)
    except FileNotFoundError:  # removed between makedirs and the lock: again
      continue
    except OSError as e:
      raise AnoganError(f"cannot write to workdir {workdir} ({e.strerror}); choose a writable --workdir") from None
    if lock.fd is None or _same_folder(lock.fd, workdir):
      return lock, missing
    lock.release()
  raise AnoganError(f"workdir {workdir} keeps being removed while this run starts; is another run "
                    "failing on it? Try again, or use another --workdir")


def remove_created_folders(created: List[str]) -> None:
  """Removes the folders create_and_lock_workdir made, innermost first, as long as they are empty."""
  for folder in reversed(created):
    try:
      os.rmdir(folder)
    except OSError:
      return


def evaluation_folders(workdir: str) -> List[str]:
  """eval/ and the eval_*/ folders of `evaluate --eval_dir` inside the workdir."""
  return sorted(os.path.join(workdir, name) for name in os.listdir(workdir)
                if (name == "eval" or name.startswith("eval_")) and os.path.isdir(os.path.join(workdir, name)))


def lock_evaluations(workdir: str) -> List[DirectoryLock]:
  """Evaluate's lock on each evaluation folder of the workdir, for deleting them (--overwrite)."""
  locks = []
  try:
    for folder in evaluation_folders(workdir):
      try:
        locks.append(lock_eval(workdir, folder))
      except AnoganError:
        raise AnoganError(f"an evaluate is running on {workdir} (writing {folder}); wait for it to finish "
                          "(or stop it) before training there with --overwrite") from None
      except OSError as e:
        raise AnoganError(f"cannot clear {folder} ({e.strerror}); remove it yourself, then train again "
                          "with --overwrite") from None
  except BaseException:
    for lock in locks:
      lock.release()
    raise
  return locks


def load_networks(workdir: str, family, config=None) -> dict:
  """{name: keras.Model} of the family's trained networks, from the workdir's <name>.keras files.
  With `config`, those its scorer needs (the family's `scoring_networks(config)`, else NETWORKS:
  anogan with --initial_z=encoder needs the warm-start encoder too), their layers in its
  --precision (whichever precision trained them); without, NETWORKS and those of the family's
  OPTIONAL_NETWORKS the workdir has, in float32."""
  import keras

  from anogan_tf.nn import precision
  networks = {}
  if config is not None:
    names = family.scoring_networks(config) if hasattr(family, "scoring_networks") else family.NETWORKS
  else:
    optional = getattr(family, "OPTIONAL_NETWORKS", ())
    names = family.NETWORKS + tuple(n for n in optional if os.path.exists(os.path.join(workdir, f"{n}.keras")))
  for name in names:
    path = os.path.join(workdir, f"{name}.keras")
    if not os.path.exists(path) and name not in family.NETWORKS:
      raise AnoganError(f"{path} is missing; {family.untrained_network_hint(name, workdir)}")
    if not os.path.exists(path):
      raise AnoganError(f"{path} is missing; train first: python -m anogan_tf.train --workdir={workdir} ...")
    try:
      with precision.policy(config.precision if config is not None else "float32"):
        networks[name] = keras.models.load_model(path)
    except Exception as e:  # Keras raises many types for damaged archives
      if _intact_archive(path):
        raise AnoganError(f"{path} holds other networks than this anogan_tf builds from the workdir's settings "
                          f"({type(e).__name__}; an older version's workdir?); retrain it: python -m anogan_tf.train "
                          f"--workdir={workdir} --overwrite") from None
      raise AnoganError(f"{path} cannot be loaded ({type(e).__name__}); rerun training on the workdir "
                        "to export it again") from None
  return networks


def load_scorer(config: Config, workdir: str, family):
  """(scorer, networks): the family's scorer on the workdir's networks (`load_networks`), on this
  device, or with --strategy on the strategy's devices, each chunk split across them. evaluate
  and score build theirs here."""
  if config.strategy == "default":
    networks = load_networks(workdir, family, config)
    return family.make_scorer(config, networks), networks
  from anogan_tf.engine import distribute
  return distribute.make_scorer(family, config, lambda: load_networks(workdir, family, config))


def lock_eval(workdir: str, out_dir: str = "") -> DirectoryLock:
  """Creates the evaluation folder (default workdir/eval/) and locks it: one evaluate at a time
  writes there."""
  out_dir = out_dir or os.path.join(workdir, "eval")
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise AnoganError(f"cannot create {out_dir} ({e.strerror}); make the workdir writable") from None
  return DirectoryLock(out_dir, f"another evaluate is running on {workdir}; wait for it to finish "
                                "(or stop it) and run evaluate again")


def _intact_archive(path: str) -> bool:
  """Whether the .keras file at `path` is a whole zip archive: then a failed load means its
  networks differ from what the code builds, not a damaged file."""
  try:
    with zipfile.ZipFile(path) as archive:
      return archive.testzip() is None
  except (OSError, zipfile.BadZipFile):
    return False
