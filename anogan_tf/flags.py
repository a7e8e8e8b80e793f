"""absl flags generated from `Config`: one flag per field, same name, same default, same help.

The command-line tools stay thin: they parse flags, build a `Config` by keyword and call the
library. An existing workdir's `flags.txt` is the base; flags given on the command line win.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
import typing

from absl import app, flags, logging

from anogan_tf.config import Config, parse_value
from anogan_tf.errors import AnoganError

FLAGS = flags.FLAGS


def _help_texts() -> dict:
  """The comment beside each field in config.py is its flag's help."""
  texts = {}
  for line in inspect.getsource(Config).splitlines():
    match = re.match(r"\s+(\w+): [^=]+=[^#]*#\s*(.*)", line)
    if match:
      texts[match.group(1)] = match.group(2)
  return texts


def define_config_flags() -> None:
  hints = typing.get_type_hints(Config)
  texts = _help_texts()
  for field in dataclasses.fields(Config):
    if field.name in FLAGS:
      continue
    hint, default, text = hints[field.name], field.default, texts.get(field.name, field.name)
    if hint is bool:
      flags.DEFINE_boolean(field.name, default, text)
    elif typing.get_origin(hint) is tuple:
      flags.DEFINE_list(field.name, [str(v) for v in default], text)
    elif hint is int:
      flags.DEFINE_integer(field.name, default, text)
    elif hint is float:
      flags.DEFINE_float(field.name, default, text)
    else:
      flags.DEFINE_string(field.name, default, text)


def config_from_flags(base: Config = None) -> Config:
  """A Config from the parsed flags; with `base`, only flags given explicitly override it."""
  hints = typing.get_type_hints(Config)
  values = {}
  for field in dataclasses.fields(Config):
    flag = FLAGS[field.name]
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


def _parse_flags(argv):
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    print(f"error: {message}; see --helpfull for the valid flags", file=sys.stderr)
    sys.exit(2)
  if len(rest) > 1:
    print(f"error: unexpected argument '{rest[1]}'; flags look like --name=value", file=sys.stderr)
    sys.exit(2)
  return rest


def run(main) -> None:
  """absl's app.run with one-line errors: AnoganError and flag errors exit 2 without a traceback,
  Ctrl-C exits 130."""
  def wrapped(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint INFO lines would bury the progress bar
    try:
      main()
    except AnoganError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except KeyboardInterrupt:  # every output is crash-safe, so Ctrl-C needs no traceback
      print("\nerror: interrupted; rerun the same command to resume", file=sys.stderr)
      sys.exit(130)
  app.run(wrapped, flags_parser=_parse_flags)
