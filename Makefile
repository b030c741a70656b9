# transmiter — `make help` lists the targets. Every target sets up the environment first (uv).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen
PYTEST_ARGS ?=
export TRANSMITER_ROOT ?= $(CURDIR)

.PHONY: help setup test test-all test-slow lint format smoke demo report clean clean-cache

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(UV):
	python3 -m pip install --user --quiet uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: .venv/.synced ## Create the environment from uv.lock (torch, open_clip, lightning, hydra, ...)

test: setup ## Fast test tier (no slow tests), a few minutes on 2 CPU cores
	$(RUN) pytest -m "not slow and not gpu" --timeout=600 $(PYTEST_ARGS)

test-all: setup ## Full test tier, slow tests included (what CI runs)
	$(RUN) pytest -m "not gpu" --timeout=1500 $(PYTEST_ARGS)

test-slow: setup ## Only the slow tests (science checks, DDP, end-to-end studies)
	$(RUN) pytest -m "slow and not gpu" --timeout=1500 $(PYTEST_ARGS)

lint: setup ## ruff lint + format check
	$(RUN) ruff check src tests
	$(RUN) ruff format --check src tests

format: setup ## Apply ruff fixes and formatting
	$(RUN) ruff check --fix src tests
	$(RUN) ruff format src tests

smoke: setup ## Zero-shot base2novel with a random-init tiny ViT on a fake dataset (no download)
	$(RUN) transmiter data fake dataset=smoke
	$(RUN) transmiter experiment=smoke hydra.run.dir=outputs/smoke/run
	$(RUN) transmiter report outputs/smoke --out outputs/smoke/report --title "Smoke study"

report: setup ## Tables and plots from every results record under outputs/
	$(RUN) transmiter report outputs --out outputs/report

clean: ## Remove run outputs (keeps caches and data)
	rm -rf outputs

clean-cache: ## Remove feature caches and pretrained synthetic models
	rm -rf .cache/transmiter
