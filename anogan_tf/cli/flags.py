"""absl flags generated from `Config`: one flag per field, same name, same default, same help.

The command-line tools stay thin: they parse flags, build a `Config` by keyword and call the
library. An existing workdir's `flags.txt` is the base; flags given on the command line win.

Flagfiles work from any directory: a relative `--flagfile=` inside a flagfile names a file next
to the including file, or in a folder above it (so `--flagfile=experiments/base.flags` inside
experiments/mnist.flags finds the repository's experiments/base.flags), and only then, as absl
does, relative to the current directory. `expand_flagfiles` resolves them before absl parses.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing

from absl import flags, logging

from anogan_tf.config import Config, parse_value
from anogan_tf.errors import AnoganError

FLAGS = flags.FLAGS


def define_config_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  hints = typing.get_type_hints(Config)
  for field in dataclasses.fields(Config):
    if field.name in flag_values:
      continue
    hint, default, text = hints[field.name], field.default, field.metadata.get("help") or field.name
    if hint is bool:
      flags.DEFINE_boolean(field.name, default, text, flag_values=flag_values)
    elif typing.get_origin(hint) is tuple:
      flags.DEFINE_list(field.name, [str(v) for v in default], text, flag_values=flag_values)
    elif hint is int:
      flags.DEFINE_integer(field.name, default, text, flag_values=flag_values)
    elif hint is float:
      flags.DEFINE_float(field.name, default, text, flag_values=flag_values)
    else:
      flags.DEFINE_string(field.name, default, text, flag_values=flag_values)
  if "cpu_devices" not in flag_values:  # distribute: process-wide, so the CLI's, not a Config field
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (for --strategy=mirrored "
                         "on a machine without GPUs: a correctness check, not a speed-up); 0: as TensorFlow finds "
                         "them.",
                         lower_bound=0, flag_values=flag_values)


def config_from_flags(base: Config = None, flag_values: flags.FlagValues = FLAGS) -> Config:
  """A Config from the parsed flags; with `base`, only flags given explicitly override it."""
  hints = typing.get_type_hints(Config)
  values = {}
  for field in dataclasses.fields(Config):
    flag = flag_values[field.name]
    if base is None or flag.present:
      values[field.name] = parse_value(field.name, hints[field.name], flag.value)
  return base.replace(**values) if base is not None else Config(**values)


def workdir_config(workdir: str):
  """The Config recorded in workdir/flags.txt, or None for a new workdir."""
  path = os.path.join(workdir, "flags.txt")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return Config.from_flagfile_text(f.read())
  except (OSError, UnicodeDecodeError, AnoganError) as e:
    reason = e if isinstance(e, AnoganError) else type(e).__name__
    raise AnoganError(f"{path} is damaged ({reason}); restore it, or train again with "
                      "`python -m anogan_tf.train --overwrite`") from None


_FLAGFILE_DIRECTIVES = ("--flagfile", "-flagfile")


def _flagfile_lines(path: str, stack: tuple) -> list:
  """The flag lines of flagfile `path` (absl's rules: blank lines and lines starting with # or //
  are skipped), its nested flagfiles expanded in place, relative ones found from `path`."""
  if path in stack:
    raise AnoganError(f"flagfile {path} includes itself (through {' -> '.join(stack)}); remove the circular "
                      "--flagfile line")
  try:
    with open(path) as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
    where = f" (included from {stack[-1]})" if stack else ""
    raise AnoganError(f"cannot read flagfile {path}{where}: {reason}; fix the --flagfile path") from None
  lines = []
  for line in text.splitlines():
    if not line.strip() or line.startswith(("#", "//")):
      continue
    name, _, value = line.strip().partition("=")
    if name in _FLAGFILE_DIRECTIVES:
      if value.strip():  # absl ignores an empty --flagfile=
        lines += _flagfile_lines(_find_included(value.strip(), path), stack + (path,))
    else:
      lines.append(line.strip())
  return lines


def _find_included(name: str, including: str) -> str:
  """Where a --flagfile line of `including` points: an absolute path as is; a relative one next
  to `including`, else in the nearest folder above it that has it, else (absl's own rule)
  relative to the current directory."""
  name = os.path.expanduser(name)
  if os.path.isabs(name):
    return name
  folder = os.path.dirname(os.path.abspath(including))
  while True:
    candidate = os.path.join(folder, name)
    if os.path.isfile(candidate):
      return candidate
    parent = os.path.dirname(folder)
    if parent == folder:
      return os.path.abspath(name)
    folder = parent


def expand_flagfiles(args: list) -> list:
  """Command-line arguments with every --flagfile=F replaced by F's flag lines (nested flagfiles
  resolved as the module docstring says), so parsing no longer depends on the current directory.
  A top-level relative F is relative to the current directory, as absl has it."""
  out, rest = [], list(args)
  while rest:
    arg = rest.pop(0)
    if arg == "--":
      out += [arg] + rest
      break
    name, eq, value = arg.partition("=")
    if name in _FLAGFILE_DIRECTIVES:
      if not eq:  # --flagfile PATH
        if not rest:
          raise AnoganError("--flagfile needs a file name, e.g. --flagfile=experiments/mnist.flags")
        value = rest.pop(0)
      if value.strip():
        out += _flagfile_lines(os.path.abspath(os.path.expanduser(value.strip())), ())
    else:
      out.append(arg)
  return out


def config_from_args(args: list, base: Config = None) -> Config:
  """The Config a command line's settings (`args`, without the program name, e.g.
  ["--flagfile=experiments/mnist.flags", "--normal_classes=3"]) resolve to, parsed by absl as
  the command-line tools parse them; with `base`, only the settings given override it."""
  flag_values = flags.FlagValues()
  define_config_flags(flag_values)
  try:
    rest = flag_values(["anogan_tf"] + expand_flagfiles(args))
  except flags.Error as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise AnoganError(f"{message}; see --helpfull for the valid flags") from None
  if len(rest) > 1:
    raise AnoganError(f"unexpected argument '{rest[1]}'; flags look like --name=value")
  return config_from_flags(base, flag_values)


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def run_command(define_flags, body, argv=None, doc: str = "") -> int:
  """Runs one command: a FlagValues of its own (`define_flags(flag_values)` defines its flags),
  parsed from `argv` (program name first; default sys.argv) with flagfiles resolved as
  `expand_flagfiles` says, then `body(flag_values)`. Returns the exit code: 0; 2 after a
  one-line `error: ...` on stderr for a flag error or an AnoganError (no traceback); 130 on
  Ctrl-C. --help prints `doc` and the flags. Nothing global is parsed, so a program (or a test)
  may call several commands in one process."""
  argv = list(sys.argv if argv is None else argv)
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  if any(arg in HELP_FLAGS for arg in argv[1:]):
    print(doc.strip() + "\n\n" + flag_values.get_help())
    return 0
  try:
    rest = flag_values(argv[:1] + expand_flagfiles(argv[1:]))
    if len(rest) > 1:
      raise AnoganError(f"unexpected argument '{rest[1]}'; flags look like --name=value")
  except AnoganError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except flags.Error as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    print(f"error: {message}; see --helpfull for the valid flags", file=sys.stderr)
    return 2
  if not FLAGS.is_parsed():
    FLAGS.mark_as_parsed()  # absl's logging otherwise prefixes its first line with a notice
  logging.set_verbosity(logging.WARNING)  # TF's checkpoint INFO lines would bury the progress bar
  try:
    if "cpu_devices" in flag_values and flag_values.cpu_devices > 1:  # before TensorFlow initialises its devices
      from anogan_tf.engine import distribute
      distribute.set_cpu_devices(flag_values.cpu_devices)
    body(flag_values)
  except AnoganError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:  # every output is crash-safe, so Ctrl-C needs no traceback
    print("\nerror: interrupted; rerun the same command to resume", file=sys.stderr)
    return 130
  return 0
