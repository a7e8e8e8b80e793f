# Every target that runs code first makes sure .venv exists with the package installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DIGITS ?= 0
RUNS ?= runs
FLAGFILE ?= experiments/mnist.flags
EXTRA ?=

.PHONY: install test reproduce-mnist bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

# Seed 000 on the one-class protocol: train on each digit of DIGITS, score the whole test split.
reproduce-mnist: install
	@set -e; for d in $(DIGITS); do \
	  $(PY) -m anogan_tf.train --flagfile=$(FLAGFILE) --workdir=$(RUNS)/mnist_$$d --normal_classes=$$d $(EXTRA); \
	  $(PY) -m anogan_tf.evaluate --workdir=$(RUNS)/mnist_$$d $(EXTRA); \
	done; \
	$(PY) -m anogan_tf.summarize $(foreach d,$(DIGITS),$(RUNS)/mnist_$(d))

bench: install
	$(PY) -m anogan_tf.bench --output=experiments/results/bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
