"""README.md and docs/*.md stay true to the code.

The README stays short enough to read in five minutes and links every docs page; every relative
link (and its #section) points to something that exists; every command the pages show names an
existing `python -m anogan_tf.<command>`, Makefile target or experiment script, with flags that
command accepts. The command-line tools' flags are read from their source (the `DEFINE_*` calls,
plus `anogan_tf.Config`'s fields where a tool defines them), so nothing here runs TensorFlow.
"""

from __future__ import annotations

import ast
import functools
import glob
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
PAGES = [README] + DOCS
README_MAX_LINES = 250
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")
ABSL_FLAGS = {"help", "helpfull", "helpshort", "flagfile", "undefok"}  # every absl program has them
ARGPARSE_FLAGS = {"help"}


def _name(path: str) -> str:
  return os.path.relpath(path, ROOT)


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


# --- reading markdown -----------------------------------------------------------------------------

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _fenced_blocks(text: str) -> list:
  """(info string, body) of every fenced code block."""
  return [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(text)]


def _prose(text: str) -> str:
  """The text without code blocks and inline code, where links live."""
  return _INLINE_CODE.sub(" ", _FENCE.sub("\n", text))


def _links(text: str) -> list:
  return _LINK.findall(_prose(text))


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to hyphens."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link keeps its words
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: str) -> set:
  """Every anchor GitHub gives the headings of a markdown file (repeats get -1, -2, ...)."""
  seen, anchors = {}, set()
  for line in _FENCE.sub("\n", _read(path)).splitlines():
    match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
    if match:
      slug = _slug(match.group(1))
      anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
      seen[slug] = seen.get(slug, 0) + 1
  return anchors


def _command_lines(text: str) -> list:
  """Shell command lines the page shows: each line of a shell code block (continuation lines
  joined), and each inline code span that starts with a command."""
  lines = []
  for info, body in _fenced_blocks(text):
    if info in SHELL_BLOCKS:
      lines += [line.strip() for line in re.sub(r"\\\n", " ", body).splitlines() if line.strip()]
  for match in _INLINE_CODE.finditer(_FENCE.sub("\n", text)):
    span = " ".join(match.group(2).split())
    if re.match(r"(python3? -m anogan_tf\.|python3? (experiments|benchmarks)/|make )", span):
      lines.append(span)
  return lines


def _words(line: str) -> list:
  """The words of a command line, comments dropped (`[--flag]` optional parts kept as words)."""
  try:
    return shlex.split(line, comments=True)
  except ValueError:  # an unbalanced quote in a shortened example
    return line.split("#")[0].split()


def _invocations(line: str, pattern: str) -> list:
  """(name, arguments) of each command in `line` whose words match `pattern` (a regex over the
  words joined by spaces, one group: the command's name); arguments run up to the next ; && || |."""
  words = _words(line)
  found = []
  for i in range(len(words)):
    match = re.fullmatch(pattern, " ".join(words[i:i + pattern.count(" ") + 1]))
    if match:
      rest = words[i + pattern.count(" ") + 1:]
      end = next((j for j, w in enumerate(rest) if w in (";", "&&", "||", "|")), len(rest))
      found.append((match.group(1), rest[:end]))
  return found


def _flag_names(arguments: list) -> list:
  names = []
  for word in arguments:
    word = word.strip("[]")
    if word.startswith("--") and len(word) > 2:
      names.append(word[2:].split("=", 1)[0])
  return names


# --- what the code accepts ------------------------------------------------------------------------

def _call_arguments(path: str, prefix: str) -> list:
  """The leading string-literal arguments of every call in a Python file to a function or method
  whose name starts with `prefix` (`DEFINE_`: absl's flags; `add_argument`: argparse's)."""
  out = []
  for node in ast.walk(ast.parse(_read(path))):
    if isinstance(node, ast.Call):
      func = node.func
      if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")).startswith(prefix):
        literal = [isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args] + [False]
        out.append([a.value for a in node.args[:literal.index(False)]])
  return out


def _absl_flags(path: str) -> set:
  """The names of the flags a module defines with absl's `DEFINE_*(name, default, help)`."""
  return {args[0] for args in _call_arguments(path, "DEFINE_") if args}


def _calls(path: str, name: str) -> bool:
  return any(isinstance(n, ast.Call) and name in (getattr(n.func, "attr", None), getattr(n.func, "id", None))
             for n in ast.walk(ast.parse(_read(path))))


def _command_module(command: str):
  """The file `python -m anogan_tf.<command>` runs, or None."""
  for path in (os.path.join(ROOT, "anogan_tf", f"{command}.py"),
               os.path.join(ROOT, "anogan_tf", command, "__main__.py")):
    if os.path.isfile(path):
      return path
  return None


@functools.lru_cache(maxsize=None)
def command_flags(command: str) -> frozenset:
  """Every flag `python -m anogan_tf.<command>` accepts: what its define_flags defines."""
  import importlib

  from absl import flags
  path = _command_module(command)
  module = importlib.import_module(f"anogan_tf.{command}")
  assert hasattr(module, "define_flags"), f"{_name(path)} has no define_flags: teach tests/test_docs.py where they moved"
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  return frozenset(set(flag_values) | ABSL_FLAGS)


@functools.lru_cache(maxsize=None)
def script_flags(path: str) -> frozenset:
  """Every flag an experiment or benchmark script accepts (argparse or absl)."""
  argparse = {name[2:] for args in _call_arguments(path, "add_argument") for name in args
              if name.startswith("--")}
  absl = _absl_flags(path)
  return frozenset(argparse | ARGPARSE_FLAGS | (absl | ABSL_FLAGS if absl else set()))


@functools.lru_cache(maxsize=None)
def makefile() -> tuple:
  """(targets, variables) of the Makefile."""
  text = _read(os.path.join(ROOT, "Makefile"))
  targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))
  variables = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*[?:+]?=", text, re.M))
  return frozenset(targets), frozenset(variables)


def _accepts(flag: str, known: frozenset) -> bool:
  return flag in known or (flag.startswith("no") and flag[2:] in known)  # absl's --noBOOLEAN


# --- the checks -----------------------------------------------------------------------------------

def problems_in(path: str, text: str = None) -> list:
  """Every link and command of the page at `path` (its text, or `text` as if it were there) that
  does not match the repository, as readable lines."""
  text, page = _read(path) if text is None else text, _name(path)
  problems = []
  for target in _links(text):
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
      continue
    file_part, _, anchor = target.partition("#")
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
    if not os.path.exists(resolved):
      problems.append(f"{page}: link {target} points to {_name(resolved)}, which does not exist")
    elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
      problems.append(f"{page}: link {target}: {_name(resolved)} has no heading with anchor #{anchor}")
  targets, variables = makefile()
  for line in _command_lines(text):
    for command, arguments in _invocations(line, r"python3? -m anogan_tf\.(\w+)"):
      if _command_module(command) is None or "__main__" not in _read(_command_module(command)):
        problems.append(f"{page}: `python -m anogan_tf.{command}` is not a command ({line})")
        continue
      for flag in _flag_names(arguments):
        if not _accepts(flag, command_flags(command)):
          problems.append(f"{page}: {command} has no flag --{flag} ({line})")
    for script, arguments in _invocations(line, r"python3? ((?:experiments|benchmarks)/\w+\.py)"):
      script_path = os.path.join(ROOT, script)
      if not os.path.isfile(script_path):
        problems.append(f"{page}: {script} does not exist ({line})")
        continue
      for flag in _flag_names(arguments):
        if not _accepts(flag, script_flags(script_path)):
          problems.append(f"{page}: {script} has no flag --{flag} ({line})")
    for target, arguments in _invocations(line, r"make ([\w-]+)"):
      for word in [target] + arguments:
        assignment = re.fullmatch(r"([A-Za-z_]\w*)=.*", word, re.S)
        if assignment and assignment.group(1) not in variables:
          problems.append(f"{page}: the Makefile has no variable {assignment.group(1)} ({line})")
        elif not assignment and not word.startswith("-") and word not in targets:
          problems.append(f"{page}: the Makefile has no target {word} ({line})")
  return problems


def test_readme_reads_in_five_minutes():
  lines = _read(README).count("\n")
  assert lines < README_MAX_LINES, f"README.md has {lines} lines; move details to docs/ (< {README_MAX_LINES})"


def test_readme_links_every_docs_page():
  linked = {os.path.normpath(os.path.join(ROOT, t.partition("#")[0])) for t in _links(_read(README))}
  missing = [_name(page) for page in DOCS if page not in linked]
  assert DOCS and not missing, f"README.md does not link {missing}"


def test_readme_shows_each_command_once_at_least():
  """The README's examples: one of each command-line tool and the set-up targets."""
  shown = set()
  for line in _command_lines(_read(README)):
    shown |= {c for c, _ in _invocations(line, r"python3? -m anogan_tf\.(\w+)")}
    shown |= {f"make {t}" for t, _ in _invocations(line, r"make ([\w-]+)")}
  missing = {"train", "evaluate", "score", "export", "make test", "make reproduce-mnist"} - shown
  assert not missing, f"README.md shows no example of {sorted(missing)}"


@pytest.mark.parametrize("path", PAGES, ids=_name)
def test_links_and_commands_match_the_repository(path):
  problems = problems_in(path)
  assert not problems, "\n".join(problems)


# --- the checker itself, on pages that are wrong on purpose --------------------------------------

PAGE = os.path.join(ROOT, "docs", "page.md")  # where the pages below pretend to be


@pytest.mark.parametrize("text,expected", [
    ("```bash\npython -m anogan_tf.train --workdir=w --made_up_flag=1\n```\n", "train has no flag --made_up_flag"),
    ("```bash\npython -m anogan_tf.score --workdir=w --input=x \\\n    --output=o --threshold=3\n```\n",
     "score has no flag --threshold"),
    ("Run `python -m anogan_tf.evaluate --workdir=w --top=3`.\n", "evaluate has no flag --top"),
    ("```bash\npython -m anogan_tf.trian --workdir=w\n```\n", "anogan_tf.trian` is not a command"),
    ("```bash\npython -m anogan_tf.errors\n```\n", "anogan_tf.errors` is not a command"),
    ("```bash\nmake reproduce-mnistt\n```\n", "no target reproduce-mnistt"),
    ("```bash\nmake compare CLASES=all\n```\n", "no variable CLASES"),
    ("```bash\npython experiments/reproduce.py --dataset=mnist --clases=0\n```\n", "reproduce.py has no flag --clases"),
    ("```bash\npython experiments/reprodcue.py\n```\n", "reprodcue.py does not exist"),
    ("See [the table](../experiments/results/mnist_nothing.md).\n", "which does not exist"),
    ("See [speed](speed.md#no-such-section).\n", "has no heading with anchor #no-such-section"),
])
def test_checker_finds_each_kind_of_mistake(text, expected):
  problems = problems_in(PAGE, text)
  assert any(expected in p for p in problems), problems


def test_checker_accepts_what_the_tools_accept():
  text = ("```bash\n"
          "python -m anogan_tf.train --flagfile=experiments/mnist.flags --workdir=w --cpu_devices=2 "
          "--nodeterministic --helpfull   # --not_checked in a comment\n"
          "python -m anogan_tf.export --workdir=w --output=o [--threshold=T] [--overwrite]\n"
          "make compare DATASET=fashion_mnist CLASSES=all\n"
          "```\n"
          "[a section](troubleshooting.md#exporting-a-savedmodel-export), [the code](../anogan_tf/cli/flags.py)\n"
          "`model.signatures[\"serving_uint8\"](images=x)` is code, not a link.\n")
  assert problems_in(PAGE, text) == []


def test_github_anchors():
  assert _slug("Several devices and hosts (`--strategy`)") == "several-devices-and-hosts---strategy"
  assert _slug("Faithful to seed 000, and where it differs") == "faithful-to-seed-000-and-where-it-differs"
  assert _slug("The family side by side (`make compare`)") == "the-family-side-by-side-make-compare"


@pytest.mark.parametrize("dataset, driver", [("ucr", "experiments/ucr.py"),
                                             ("moving_mnist", "experiments/moving_mnist.py"),
                                             ("fashion_mnist", "experiments/compare.py")])
def test_make_compare_runs_each_datasets_own_driver(dataset, driver):
  """`make compare DATASET=...`: the sequence datasets run their own drivers, with SEEDS and RESULTS;
  the picture datasets the family's compare.py (make's dry run: the commands, nothing run)."""
  import subprocess
  done = subprocess.run(["make", "-n", "-o", ".venv/.installed", "compare", f"DATASET={dataset}", "SEEDS=4,5",
                         "RESULTS=somewhere"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stderr
  commands = [line for line in done.stdout.replace("\\\n", " ").splitlines() if "experiments/" in line]
  assert len(commands) == 1 and driver in commands[0], done.stdout
  assert '--seeds="4,5"' in commands[0] and "somewhere" in commands[0], commands
