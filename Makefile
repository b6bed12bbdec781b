# cart-pipeline: every target installs what it needs into a project-local .venv first,
# so `make run` and `make test` work on a fresh clone and are safe to repeat.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# kedro-telemetry must not phone home (.telemetry also records consent: false).
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
# Nothing may reach a model hub at run time: the encoders ship inside PyPI packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run run-emoji resume serve test test-fast viz viz-build mlflow-ui ablations seeds benchmark dataset lint clean-data

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a bare `torch` would resolve to a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	# the [clip] and [clap] extras: the tests run CLIP and CLAP code on tiny local models
	$(BIN)/python -m pip install --quiet -e ".[dev,clip,clap]"
	# aisfx pins ancient numpy/librosa; we use only its model class and checkpoint.
	$(BIN)/python -m pip install --quiet --no-deps "aisfx==0.1.2"
	touch $(STAMP)

## The main job: the whole default pipeline on the shipped dataset.
run: install
	$(BIN)/kedro run

## The second shipped collection, emoji (conf/emoji: its own data/emoji outputs).
run-emoji: install
	$(BIN)/kedro run --env emoji

## Finish the newest `kedro run` that was interrupted or failed: only its unfinished nodes.
resume: install
	$(BIN)/kedro resume

## The test suite (lint, unit, pipeline slices, end-to-end `kedro run`s, `kedro viz build`).
test: install lint
	$(BIN)/python -m pytest

## The fast tier: core and pipeline units, no subprocess (`slow` marks the rest).
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

viz: install
	$(BIN)/kedro viz run

viz-build: install
	$(BIN)/kedro viz build

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

## Full CART, each ablation as its own MLflow run, then the comparison table.
serve: install  # the search page on http://127.0.0.1:8765 (after `make run`)
	$(BIN)/cart-search --serve

ablations: install
	$(BIN)/python -m experiments.ablations

## Headline numbers: the pipeline once per seed and collection, then mean ± sd.
seeds: install
	$(BIN)/python -m experiments.seeds --envs local emoji

benchmark: install
	$(BIN)/python -m benchmarks.efficiency

## Rebuild the shipped collections from their Debian packages (needs apt-get; not needed to run).
dataset: install
	$(BIN)/python -m pip install --quiet -e ".[dataset]"
	$(BIN)/python scripts/build_default_dataset.py
	$(BIN)/python scripts/build_emoji_dataset.py

lint: install
	$(BIN)/ruff check src tests benchmarks scripts experiments
	$(BIN)/ruff format --check src tests benchmarks scripts experiments

clean-data:
	find data -mindepth 1 -maxdepth 1 -not -name 01_raw -exec rm -rf {} +
