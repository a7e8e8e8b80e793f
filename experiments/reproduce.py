"""The one-class reproduction table: train one GAN per (class, seed), evaluate it with each preset.

  python experiments/reproduce.py --dataset=mnist --presets=seed000,paper --classes=all --seeds=0,1,2 \
      --results_dir=experiments/results

For every seed, then every class: train `runs/<dataset>/gan-<hash>/class<c>_seed<s>` (the hash names
the training settings, so presets that differ only in mapping, seed000 and paper, share one GAN
and it is trained once), then evaluate it once per preset into `eval_<preset>/`, and write one
record per (preset, class, seed) to `<results_dir>/runs/<dataset>_<preset>/class<c>_seed<s>.json`
(metrics, training and scoring wall time, commit, exact commands). A run whose records exist is
not redone, so the command resumes after an interruption at (class, seed) granularity (and a
killed training resumes from its last epoch). After each run the tables are rebuilt by
`experiments/report.py`. One result line per record on stdout; on stderr, as the commands show
it, the progress: each run as it starts, the bars of its training and scoring commands, and its
time with an estimate of the time left. No TensorFlow start-up notices (`quiet_tensorflow`).
"""

from __future__ import annotations

import argparse
import codecs
import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import ensemble  # noqa: E402  (experiments/ensemble.py)
import report  # noqa: E402  (experiments/report.py)

# Preset name -> flagfile. seed000's flagfile keeps its historical name.
PRESETS = {"seed000": "experiments/mnist.flags", "paper": "experiments/paper.flags",
           "seed001": "experiments/seed001.flags", "seed002": "experiments/seed002.flags",
           "best": "experiments/best.flags", "best_long": "experiments/best_long.flags"}
# `make compare`'s methods: name -> (flagfile, flags for train, flags for evaluate). The warm
# starts score seed 000's GAN (the anogan method's, trained once) from its encoder's E(x).
WARM_ENCODER_EPOCHS = 50
WARM_STEPS = (0, 10, 25, 50)
METHODS = {
    "anogan": ("experiments/mnist.flags", [], []),
    **{f"anogan_warm_{k}": ("experiments/mnist.flags", [f"--encoder_epochs={WARM_ENCODER_EPOCHS}"],
                            ["--initial_z=encoder", f"--map_steps={k}"]) for k in WARM_STEPS},
    "egbad": ("experiments/egbad.flags", [], []),
    "ae": ("experiments/ae.flags", [], []),
    "vae": ("experiments/vae.flags", [], []),
}
# Each preset scored in bfloat16 (issue 25's AUROC check): the same GAN, evaluated with
# --precision=bfloat16, as `<preset>_bf16`.
BF16 = {f"{name}_bf16": (flagfile, [], ["--precision=bfloat16"]) for name, flagfile in PRESETS.items()}
# And trained in bfloat16 (a GAN of its own), evaluated in bfloat16, as `<preset>_bf16_trained`.
BF16_TRAINED = {f"{name}_bf16_trained": (flagfile, ["--precision=bfloat16"], ["--precision=bfloat16"])
                for name, flagfile in PRESETS.items()}
# Trained with held-out normals (--val_fraction=0.1), as an ensemble's members need them: `<preset>_heldout`.
HELDOUT = {f"{name}_heldout": (flagfile, ["--val_fraction=0.1"], [])
           for name, flagfile in {"best": PRESETS["best"], "vae": METHODS["vae"][0], "ae": METHODS["ae"][0]}.items()}
# And best's GAN again from other initial weights and draws on the same images (--init_seed_offset:
# the run's --seed plus 1000 for training, --seed for the data): an ensemble over training seeds.
SECOND_SEED = ["--init_seed_offset=1000"]
HELDOUT["best_heldout_b"] = (PRESETS["best"], ["--val_fraction=0.1", *SECOND_SEED], SECOND_SEED)
# Every runnable name -> (flagfile, train flags, evaluate flags).
RUNS = {**{name: (flagfile, [], []) for name, flagfile in PRESETS.items()}, **METHODS, **BF16, **BF16_TRAINED,
        **HELDOUT}
# Ensembles (experiments/ensemble.py): name -> its members, runs trained with held-out normals. Each
# member is also evaluated on its held-out normals (--eval_split=val, into eval_<member>_val/)
# unless its own evaluation is that split; the ensemble's record combines the members' evaluations.
ENSEMBLES = {"ensemble_best_vae": ("best_heldout", "vae_heldout"),
             "ensemble_best_vae_ae": ("best_heldout", "vae_heldout", "ae_heldout"),
             "ensemble_best2": ("best_heldout", "best_heldout_b"),
             "ensemble_best2_vae": ("best_heldout", "best_heldout_b", "vae_heldout")}
# Trained after the GAN in the same workdir: they do not make it another GAN.
ENCODER_FIELDS = {"encoder_epochs", "kappa"}
CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}


def resolve_config(flagfile: str, overrides: list):
  """The Config a command line `--flagfile=F *overrides` resolves to (absl's own parsing)."""
  from absl import flags

  from anogan_tf.cli import flags as anogan_flags
  anogan_flags.define_config_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["reproduce", f"--flagfile={flagfile}", *overrides])
  config = anogan_flags.config_from_flags()
  flags.FLAGS.unparse_flags()
  return config


def gan_key(config) -> str:
  """A short hash of the settings that change what training computes (not class or seed)."""
  from anogan_tf import Config
  from anogan_tf.config import RESUMABLE_FIELDS
  skip = set(RESUMABLE_FIELDS) | ENCODER_FIELDS | {"normal_classes", "seed", "dataset"}
  default = Config()
  # Only what differs from the defaults: a new setting (at its default) keeps every key.
  fields = {k: v for k, v in sorted(config.__dict__.items()) if k not in skip and v != getattr(default, k)}
  return hashlib.sha256(repr(fields).encode()).hexdigest()[:8]


def encoder_flags(config) -> list:
  """The warm-start encoder's settings a preset's flagfile sets (not at their defaults), as flags:
  the group's one training command must train the encoder any of its presets scores with."""
  from anogan_tf import Config
  from anogan_tf.config import flag_text
  default = Config()
  return [f"--{name}={flag_text(getattr(config, name))}" for name in sorted(ENCODER_FIELDS)
          if getattr(config, name) != getattr(default, name)]


def commit() -> str:
  try:
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    # Code and flagfiles only: the records and tables under experiments/results are what runs write.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "anogan_tf", "experiments",
                            ":(exclude)experiments/results"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def quiet_tensorflow() -> None:
  """What the `python -m anogan_tf.*` commands do before TensorFlow loads (anogan_tf/cli/quiet.py),
  for a driver's own process: loaded by its path, since importing anogan_tf loads TensorFlow. A
  driver's `__main__` calls it first; importing a driver (tests do) quiets nothing."""
  import importlib.util
  package = importlib.util.find_spec("anogan_tf")
  if package is None or not package.submodule_search_locations:
    return  # the first import of anogan_tf will say what is missing
  spec = importlib.util.spec_from_file_location(
      "anogan_tf_cli_quiet", os.path.join(list(package.submodule_search_locations)[0], "cli", "quiet.py"))
  cli_support = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(cli_support)
  cli_support.quiet_tensorflow()


def as_a_command() -> None:
  """What the `python -m anogan_tf.*` commands do before TensorFlow loads (anogan_tf/__init__.py),
  for a driver's own process: oneDNN's kernels on x86-64, so that what the driver runs has the
  commands' speed and rounding (TF_ENABLE_ONEDNN_OPTS=0 opts out), and TensorFlow's start-up
  notices quieted. A driver's `__main__` calls it first; importing a driver (tests do) changes nothing."""
  if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  quiet_tensorflow()


def cpu_model() -> str:
  """The CPU's model name and the cores this process sees, for a record."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores visible)"
  except OSError:
    pass
  return platform.processor() or "unknown"


def note(text: str) -> None:
  """A progress line, on stderr like the commands' progress bars."""
  print(text, file=sys.stderr, flush=True)


def time_left(seconds: list, runs_left: int) -> str:
  """How many runs are left and, from the mean of the finished runs' seconds, about how long they take."""
  if runs_left <= 0:
    return "no runs left"
  minutes = max(1, round(runs_left * sum(seconds) / len(seconds) / 60))
  about = f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
  return f"{runs_left} run{'s' if runs_left > 1 else ''} left, about {about}"


class FitToTerminal:
  """Passes a command's stderr on, cutting each line it redraws in place (text after a "\\r": a
  progress bar's update) to `width` characters, as the command fits its own bar to a terminal it
  writes to: an update longer than the terminal would wrap, and the next "\\r" would leave it behind.
  Other lines (warnings, errors) pass whole. width None: everything passes whole (not a terminal)."""

  def __init__(self, width=None):
    self.width, self.column, self.redrawn = width, 0, False

  @classmethod
  def of_stderr(cls):
    try:
      if os.isatty(sys.stderr.fileno()):
        return cls(os.get_terminal_size(sys.stderr.fileno()).columns - 1)
    except (AttributeError, OSError, ValueError):
      pass
    return cls()

  def __call__(self, text: str) -> str:
    if self.width is None:
      return text
    kept = []
    for char in text:
      if char in "\r\n":
        self.column, self.redrawn = 0, char == "\r"
      elif self.redrawn and self.column >= self.width:
        continue
      else:
        self.column += 1
      kept.append(char)
    return "".join(kept)


def run_logged(args: list, log_path: str) -> float:
  """Runs `python -m ...args` with its output appended to log_path, passing its stderr (progress
  bars, warnings, errors) on to ours as it comes; returns the wall seconds."""
  began = time.perf_counter()
  with open(log_path, "ab") as log:
    log.write(f"\n$ {shlex.join(args)}\n".encode())
    log.flush()
    with subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=log, stderr=subprocess.PIPE) as command:
      text, fit = codecs.getincrementaldecoder("utf-8")("replace"), FitToTerminal.of_stderr()
      while True:
        chunk = os.read(command.stderr.fileno(), 1 << 16)  # as it comes: a bar's updates are not lines
        if not chunk:
          break
        log.write(chunk)
        log.flush()
        sys.stderr.write(fit(text.decode(chunk)))
        sys.stderr.flush()
    code = command.returncode
  if code != 0:
    raise SystemExit(f"error: `{shlex.join(args)}` failed (exit {code}); see {log_path}, fix it and rerun "
                     "this command to resume")
  return time.perf_counter() - began


def history_seconds(workdir: str, name: str = "history.csv") -> float:
  import csv
  with open(os.path.join(workdir, name), newline="") as f:
    return round(sum(float(row["seconds"]) for row in csv.DictReader(f)), 1)


def load(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def ensemble_run(name: str, args, workdir_of, seed: int, c: int, run_flags: list, record_path) -> None:
  """Writes ensemble `name`'s record of (class c, seed) from its members' evaluations (their records
  exist), evaluating each member's held-out normals first where that is missing."""
  members = []
  for m in ENSEMBLES[name]:
    workdir = workdir_of(m, seed, c)
    eval_dir = os.path.join(workdir, f"eval_{m}")
    held_out_dir = eval_dir if "--eval_split=val" in RUNS[m][2] else f"{eval_dir}_val"
    if not os.path.exists(os.path.join(held_out_dir, "metrics.json")):
      note(f"  {m}: evaluate its held-out normals")
      run_logged(["anogan_tf.evaluate", f"--workdir={workdir}", f"--eval_dir={held_out_dir}",
                  f"--flagfile={RUNS[m][0]}", *RUNS[m][2], *run_flags, "--eval_split=val"],
                 os.path.join(workdir, "reproduce.log"))
    members.append({"name": m, "eval_dir": eval_dir, "held_out_dir": held_out_dir,
                    "record": load(record_path(m, seed, c))})
  record = {"dataset": args.dataset, "preset": name, "class": c, "seed": seed, **ensemble.record(members),
            "train_commit": ", ".join(sorted({m["record"]["train_commit"] for m in members})),
            "train_command": " ; ".join(m["record"]["train_command"] for m in members),
            "eval_commit": commit(),
            "eval_command": f"experiments/ensemble.py of {', '.join(m['eval_dir'] for m in members)}",
            "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
  os.makedirs(os.path.dirname(record_path(name, seed, c)), exist_ok=True)
  report.write_json(record_path(name, seed, c), record)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="mnist", choices=sorted(CLASSES))
  parser.add_argument("--presets", default="seed000", help="comma-separated, from: " + ", ".join([*RUNS, *ENSEMBLES]))
  parser.add_argument("--classes", default="0", help="'all' or a comma/space-separated list")
  parser.add_argument("--seeds", default="0", help="comma/space-separated list")
  parser.add_argument("--runs_dir", default="runs")
  parser.add_argument("--results_dir", default="runs/results",
                      help="where records and tables go; experiments/results for the committed tables")
  parser.add_argument("--extra", default="", help="more flags for train and evaluate (quick runs)")
  parser.add_argument("--no_tables", action="store_true", help="records only (tune.py writes its own table)")
  args = parser.parse_args(argv)

  split = lambda text: [t for t in text.replace(",", " ").split() if t]  # noqa: E731
  named = split(args.presets)
  unknown = [p for p in named if p not in RUNS and p not in ENSEMBLES]
  if unknown:
    parser.error(f"unknown preset '{unknown[0]}'; use one of {', '.join([*RUNS, *ENSEMBLES])}")
  ensembles = [p for p in named if p in ENSEMBLES]
  # What is trained and evaluated: the named runs and every ensemble's members.
  presets = list(dict.fromkeys([*(p for p in named if p not in ENSEMBLES), *(m for e in ensembles for m in ENSEMBLES[e])]))
  missing = [RUNS[p][0] for p in presets if not os.path.exists(os.path.join(ROOT, RUNS[p][0]))]
  if missing:
    parser.error(f"{missing[0]} does not exist")
  classes = list(range(CLASSES[args.dataset])) if args.classes == "all" else [int(c) for c in split(args.classes)]
  seeds = [int(s) for s in split(args.seeds)]
  extra = shlex.split(args.extra)

  os.chdir(ROOT)
  configs = {p: resolve_config(RUNS[p][0], [f"--dataset={args.dataset}", *RUNS[p][1], *extra]) for p in presets}
  keys = {p: gan_key(configs[p]) for p in presets}
  for key in set(keys.values()):  # presets sharing a GAN share its encoder too
    group = [p for p in presets if keys[p] == key]
    for name in sorted(ENCODER_FIELDS):
      values = {getattr(configs[p], name) for p in group if configs[p].encoder_epochs > 0}
      if len(values) > 1:
        parser.error(f"presets {', '.join(group)} share a GAN but ask for different --{name} ({sorted(values)}); "
                     "run them separately")
  runs = [(s, c) for s in seeds for c in classes]
  record_path = lambda p, seed, c: os.path.join(  # noqa: E731
      args.results_dir, "runs", f"{args.dataset}_{p}", f"class{c}_seed{seed}.json")
  workdir_of = lambda p, seed, c: os.path.join(  # noqa: E731
      args.runs_dir, args.dataset, f"gan-{keys[p]}", f"class{c}_seed{seed}")
  run_flags_of = lambda seed, c: [f"--dataset={args.dataset}", f"--normal_classes={c}", f"--seed={seed}", *extra]  # noqa: E731

  def to_redo(p, seed, c) -> bool:
    """No record yet, or an ensemble still to write needs p's scores and they are gone (an old record)."""
    if not os.path.exists(record_path(p, seed, c)):
      return True
    return (any(p in ENSEMBLES[e] and not os.path.exists(record_path(e, seed, c)) for e in ensembles)
            and not os.path.exists(os.path.join(workdir_of(p, seed, c), f"eval_{p}", "scores.csv")))

  missing = lambda seed, c: [p for p in presets + ensembles if to_redo(p, seed, c)]  # noqa: E731
  run_seconds = []  # of the runs this command did
  print(f"{args.dataset}: presets {', '.join(f'{p} (GAN {keys[p]})' for p in presets)}; "
        f"{len(classes)} classes x {len(seeds)} seeds = {len(runs)} runs; records in {args.results_dir}/runs/",
        flush=True)
  for i, (seed, c) in enumerate(runs, start=1):
    run_began = time.perf_counter()
    to_do = missing(seed, c)
    if to_do:
      note(f"run {i} of {len(runs)}: {args.dataset} class {c} seed {seed}, presets {', '.join(to_do)}")
    for key in dict.fromkeys(keys.values()):  # one GAN per group of presets sharing it
      group = [p for p in presets if keys[p] == key]
      records = {p: record_path(p, seed, c) for p in group}
      todo = [p for p in group if to_redo(p, seed, c)]
      if not todo:
        print(f"[{i}/{len(runs)}] {args.dataset} class {c} seed {seed} {'/'.join(group)}: done before", flush=True)
        continue
      workdir = workdir_of(group[0], seed, c)
      if len(todo) < len(group) and not os.path.exists(os.path.join(workdir, "train_record.json")):
        todo = list(group)  # the GAN the finished presets scored is gone: score them all on one new GAN
      os.makedirs(workdir, exist_ok=True)
      log = os.path.join(workdir, "reproduce.log")
      run_flags = run_flags_of(seed, c)
      train_record = os.path.join(workdir, "train_record.json")
      group_train_flags = list(dict.fromkeys([*(flag for p in group for flag in RUNS[p][1]),
                                              *(flag for p in group for flag in encoder_flags(configs[p]))]))
      train_cmd = ["anogan_tf.train", f"--flagfile={RUNS[group[0]][0]}", f"--workdir={workdir}",
                   *group_train_flags, *run_flags]
      previous = {}
      if os.path.exists(train_record):
        with open(train_record) as f:
          previous = json.load(f)
      if previous.get("train_flags") != group_train_flags:  # new, or an encoder to add to a finished GAN
        note(f"  {'/'.join(group)}: train (GAN {key})")
        wall = run_logged(train_cmd, log)  # train resumes: a finished GAN is not trained again
        with open(train_record + ".tmp", "w") as f:
          json.dump({"train_wall_seconds": round(previous.get("train_wall_seconds", 0) + wall, 1),
                     "train_seconds": history_seconds(workdir),
                     **({"encoder_seconds": history_seconds(workdir, "encoder_history.csv")}
                        if os.path.exists(os.path.join(workdir, "encoder_history.csv")) else {}),
                     "train_flags": group_train_flags,
                     "train_commit": commit(), "train_command": "python -m " + shlex.join(train_cmd)}, f, indent=2)
        os.replace(train_record + ".tmp", train_record)
      with open(train_record) as f:
        trained = json.load(f)
      for p in todo:
        eval_dir = os.path.join(workdir, f"eval_{p}")
        eval_cmd = ["anogan_tf.evaluate", f"--workdir={workdir}", f"--eval_dir={eval_dir}",
                    f"--flagfile={RUNS[p][0]}", *RUNS[p][2], *run_flags]
        note(f"  {p}: evaluate")
        wall = run_logged(eval_cmd, log)
        with open(os.path.join(eval_dir, "metrics.json")) as f:
          metrics = json.load(f)
        record = {"dataset": args.dataset, "preset": p, "class": c, "seed": seed, **metrics, **trained,
                  "eval_wall_seconds": round(wall, 1), "eval_commit": commit(),
                  "eval_command": "python -m " + shlex.join(eval_cmd),
                  "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        os.makedirs(os.path.dirname(records[p]), exist_ok=True)
        report.write_json(records[p], record)
        print(f"[{i}/{len(runs)}] {args.dataset} class {c} seed {seed} {p}: AUROC {metrics['auroc']:.4f} "
              f"AUPRC {metrics['auprc']:.4f}/{metrics['auprc_normal']:.4f} (train {trained['train_seconds']:.0f} s, "
              f"score {metrics['seconds']:.0f} s)", flush=True)
        if not args.no_tables:
          report.write_tables(args.results_dir, args.dataset, p)
    for e in ensembles:
      if not os.path.exists(record_path(e, seed, c)):
        ensemble_run(e, args, workdir_of, seed, c, run_flags_of(seed, c), record_path)
        print(f"[{i}/{len(runs)}] {args.dataset} class {c} seed {seed} {e}: AUROC "
              f"{load(record_path(e, seed, c))['auroc']:.4f}", flush=True)
        if not args.no_tables:
          report.write_tables(args.results_dir, args.dataset, e)
    if to_do:
      run_seconds.append(time.perf_counter() - run_began)
      runs_left = sum(bool(missing(*run)) for run in runs[i:])
      note(f"run {i} of {len(runs)}: {args.dataset} class {c} seed {seed} done in {run_seconds[-1]:.0f} s; "
           f"{time_left(run_seconds, runs_left)}")
  for p in presets + ensembles if not args.no_tables else ():
    path = report.write_tables(args.results_dir, args.dataset, p)
    if path:
      print(f"table: {path}")
  return 0


if __name__ == "__main__":
  as_a_command()
  sys.exit(main())
