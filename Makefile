# Every target that runs code first makes sure .venv exists with the package installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DIGITS ?= 0
RUNS ?= runs
EXTRA ?=

.PHONY: install lint test test-quick reproduce-mnist reproduce-fashion compare bench bench-goals clean

# uv (from PyPI into the venv) installs the package in about a third of pip's time: parallel, and the
# bytecode compiled as pip compiles it (else every process compiles TensorFlow's modules again when
# PYTHONDONTWRITEBYTECODE is set). pip does it where uv cannot.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	( $(PY) -m pip install --quiet uv && $(VENV)/bin/uv pip install --python $(PY) --quiet --compile-bytecode -e '.[dev]' ) \
	  || ( $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -e '.[dev]' )
	touch $@

install: $(VENV)/.installed

# The import contracts (.importlinter: the layers, no family imported by generic code) and the
# linter (pyproject.toml), then every test. CI runs exactly `make test`: on as many workers as the
# machine has cores (pytest-xdist; TEST_WORKERS=0 runs them in this process), each test file on one
# worker, so a module's fixtures are built once. Each worker's TensorFlow gets its share of the
# threads (tests/conftest.py), so a worker waiting for a process it started leaves its core to that
# process. On 2 cores (AMD EPYC), one clone, nothing else running, the two counts alternated: pytest
# took 446.6 and 461.2 s on 2 workers, 498.2 and 478.8 s on 3 (user 840 s against 886 s in the
# second pair): a third worker only adds switching between three busy processes.
TEST_WORKERS ?= $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check anogan_tf tests experiments benchmarks

test: lint
	$(PY) -m pytest -q --durations=20 -n $(TEST_WORKERS) --dist loadfile tests

# The edit loop: no subprocess, no training beyond a few steps (tests marked slow are skipped).
test-quick: install
	$(PY) -m pytest -q -m "not slow" tests

# The one-class protocol (experiments/reproduce.py): train on each class of CLASSES (or DIGITS),
# score the whole test split, once per preset in PRESETS; SEEDS runs each class that many times.
# Resumable: finished (class, seed) runs are skipped. CLASSES=all runs the ten classes; the
# committed tables: RESULTS=experiments/results.
CLASSES ?= $(DIGITS)
SEEDS ?= 0
PRESETS ?= seed000
RESULTS ?= $(RUNS)/results
REPRODUCE = $(PY) experiments/reproduce.py --classes="$(CLASSES)" --seeds="$(SEEDS)" --presets="$(PRESETS)" \
	--runs_dir=$(RUNS) --results_dir=$(RESULTS) --extra="$(EXTRA)"

reproduce-mnist: install
	$(REPRODUCE) --dataset=mnist

reproduce-fashion: install
	$(REPRODUCE) --dataset=fashion_mnist

# The family side by side (experiments/compare.py): every method, CLASSES, SEEDS, on DATASET.
# The sequence datasets have drivers of their own: DATASET=ucr, the LSTM autoencoder against the
# 1-NN baselines on the five UCR datasets (experiments/ucr.py); DATASET=moving_mnist, the ConvLSTM
# autoencoder against the frame-by-frame ae (experiments/moving_mnist.py).
DATASET ?= mnist
compare: install
ifeq ($(DATASET),ucr)
	$(PY) experiments/ucr.py --seeds="$(SEEDS)" --workdirs=$(RUNS)/ucr --results_dir=$(RESULTS)
else ifeq ($(DATASET),moving_mnist)
	$(PY) experiments/moving_mnist.py --seeds="$(SEEDS)" --root=$(RUNS)/moving_mnist --out=$(RESULTS) --extra="$(EXTRA)"
else
	$(PY) experiments/compare.py --dataset=$(DATASET) --classes="$(CLASSES)" --seeds="$(SEEDS)" \
	  --runs_dir=$(RUNS) --results_dir=$(RESULTS) --extra="$(EXTRA)"
endif

# The PyTorch peer's rows need torch (CPU build), installed here for the bench only; without it
# the bench says so and skips them. BENCH_FLAGS: e.g. --test_images=2048 for a shorter run.
BENCH_FLAGS ?=
bench: install
	$(PY) -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
	  || $(PY) -m pip install --quiet torch || echo "torch could not be installed: the bench skips the PyTorch rows"
	$(PY) benchmarks/bench.py --output=experiments/results/bench $(BENCH_FLAGS)

# Only the rows of issue 25's bfloat16 goals (about a quarter of make bench): the test split's first 2,048 images.
bench-goals: install
	$(PY) -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
	  || $(PY) -m pip install --quiet torch || echo "torch could not be installed: the bench skips the PyTorch rows"
	$(PY) benchmarks/bench.py --goals --test_images=2048 --output=experiments/results/bench_bf16 $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
