# transmiter — `make help` lists the targets. Every target sets up the environment first (uv).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen
PYTEST_ARGS ?=
export TRANSMITER_ROOT ?= $(CURDIR)

.PHONY: help setup test test-all test-slow test-rebuild test-slurm lint format smoke demo demo-readme regimes regimes-readme demo-xd report clean clean-cache

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
	$(RUN) pytest -m "not gpu and not rebuild" --timeout=1500 --durations=30 $(PYTEST_ARGS)

test-slow: setup ## Only the slow tests (science checks, DDP, end-to-end studies)
	$(RUN) pytest -m "slow and not gpu and not rebuild" --timeout=1500 $(PYTEST_ARGS)

test-rebuild: setup ## Retrain the shipped synthetic world from scratch and compare its zero-shot accuracy (~16 CPU min)
	$(RUN) pytest -m rebuild --timeout=3600 -s $(PYTEST_ARGS)

test-slurm: setup ## SLURM tests: a local one-node cluster (root; apt-installs slurm-wlm, munge, slurmdbd, mariadb-server when missing), a few minutes
	$(RUN) pytest -m slurm --timeout=1800 -s $(PYTEST_ARGS)

lint: setup ## ruff lint + format check + the import layers (pyproject.toml [tool.importlinter])
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) lint-imports --no-cache

format: setup ## Apply ruff fixes and formatting
	$(RUN) ruff check --fix src tests bench
	$(RUN) ruff format src tests bench

smoke: setup ## Zero-shot base2novel with a random-init tiny ViT on a fake dataset (no download)
	$(RUN) transmiter data fake dataset=smoke
	$(RUN) transmiter experiment=smoke hydra.run.dir=outputs/smoke/run
	$(RUN) transmiter report outputs/smoke --out outputs/smoke/report --title "Smoke study"

# The synthetic world of `make demo` (conf/world/): class_knowledge (its weights ship with the package);
# the first world is one override away: `make demo WORLD=domain_shift`
WORLD ?= class_knowledge
WORLDS := domain_shift class_knowledge
# each world's generated results block: domain_shift's in the study README, another world's beside it
study_readme = experiments/$(1)/$(if $(filter domain_shift,$(2)),README.md,$(2).md)
# The studies write under outputs/ only (the tracked tree stays clean); the *-readme targets copy their
# tables into the tracked READMEs.
demo_report = $(RUN) transmiter report outputs/demo/$(1) --out outputs/demo/$(1)/report --study demo \
	--title "Demo study: the $(1) world"
demo_full_report = $(RUN) transmiter report outputs/demo_full/$(1) --out outputs/demo_full/$(1)/report \
	--study demo_full --title "The synthetic study at full size: the $(1) world"

demo: setup ## The whole study on a synthetic world, no download (WORLD=class_knowledge (default) or domain_shift); report in outputs/demo/<world>/report
	$(RUN) transmiter world build world=$(WORLD)
	$(RUN) transmiter -m experiment=demo world=$(WORLD)
	$(call demo_report,$(WORLD))

demo-readme: setup ## After make demo: refresh the world's results block in experiments/demo (WORLD=...)
	$(call demo_report,$(WORLD)) --readme $(call study_readme,demo,$(WORLD))

reproduce-demo: $(addprefix reproduce-demo-,$(WORLDS)) ## The synthetic study at full size: both worlds, every benchmark x 2 settings x 3 seeds

reproduce-demo-%: setup
	$(RUN) transmiter world build world=$*
	$(RUN) transmiter -m experiment=demo_full world=$*
	$(call demo_full_report,$*)

reproduce-demo-readme: $(addprefix reproduce-demo-readme-,$(WORLDS)) ## After make reproduce-demo: refresh both worlds' results blocks in experiments/demo_full

reproduce-demo-readme-%: setup
	$(call demo_full_report,$*) --readme $(call study_readme,demo_full,$*)

# The regimes study (experiments/regimes) reads the transfer jobs of both worlds: `make regimes` those of
# `make demo` (run it for each world: WORLD=domain_shift too), `make regimes-readme` those of
# `make reproduce-demo` (every benchmark, 3 seeds), the data of the tracked README.
regimes_study = $(RUN) transmiter regimes $(foreach w,$(WORLDS),outputs/$(1)/$(w)) --study $(1) \
	--out outputs/regimes/$(1) --title "Regimes: where weak-to-strong transfer wins and loses ($(1) study)"

regimes: setup ## After make demo on both worlds: TransMiter's gain vs source lead and alignment -> outputs/regimes/demo (tables, CSV, plot)
	$(call regimes_study,demo)

regimes-readme: setup ## After make reproduce-demo: refresh the results block of experiments/regimes/README.md
	$(call regimes_study,demo_full) --readme experiments/regimes/README.md

demo-xd: setup ## Cross-dataset, domain-generalisation and few-shot tables on the domain_shift world (see experiments/demo_xd)
	$(RUN) transmiter world build
	$(RUN) transmiter data synthetic
	$(RUN) transmiter -m experiment=demo_xd
	$(RUN) transmiter -m experiment=demo_dg
	$(RUN) transmiter -m experiment=demo_fewshot
	$(RUN) transmiter report outputs/demo_xd --out outputs/demo_xd/report --study demo_xd \
		--title "Cross-dataset, domain generalisation and few-shot on the synthetic world"

report: setup ## Tables and plots from every results record under outputs/
	$(RUN) transmiter report outputs --out outputs/report

clean: ## Remove run outputs (keeps caches and data)
	rm -rf outputs

clean-cache: ## Remove feature caches and pretrained synthetic models
	rm -rf .cache/transmiter

# ---- studies on the real datasets and weights (GPU machines) -------------------------------------
DATA ?= $(CURDIR)/data
PAIR ?= vit_b16_to_vit_l14
GPUS ?= 1
DRY_RUN ?= 0
SLURM ?= 0
PARTITION ?=
SLURM_ARGS ?=
DOWNLOAD ?= 0
# One GPU: the `gpu` trainer. Several GPUs under a local multirun need ddp_spawn (Lightning's re-executing
# `ddp` would start one sweep per GPU; the app refuses it). SLURM=1 submits every job of the study as one
# job array through submitit: each job gets one node with GPUS GPUs, and SLURM starts one task per GPU
# (plain ddp); PARTITION= picks the partition, SLURM_ARGS= adds launcher overrides such as
# hydra.launcher.account=X hydra.launcher.timeout_min=720. The command waits until every job has ended.
SINGLE_OR_DDP := $(if $(filter 1,$(GPUS)),gpu,ddp trainer.devices=$(GPUS))
ifeq ($(SLURM),1)
STUDY_TRAINER := $(SINGLE_OR_DDP) hydra/launcher=slurm $(if $(PARTITION),hydra.launcher.partition=$(PARTITION),) $(SLURM_ARGS)
else
STUDY_TRAINER := $(if $(filter 1,$(GPUS)),gpu,ddp trainer.devices=$(GPUS) trainer.strategy=ddp_spawn)
endif
STUDY_ARGS = paths.data_dir=$(DATA) pair=$(PAIR) trainer=$(STUDY_TRAINER)

.PHONY: reproduce-b2n reproduce-b2b reproduce-fewshot reproduce-xd reproduce-dg reproduce-demo reproduce-demo-readme wandb-sync

reproduce-b2n: setup ## Base-to-novel study, 11 datasets x 3 seeds (DATA=, PAIR=, GPUS=, SLURM=1 PARTITION=, DOWNLOAD=1, DRY_RUN=1 lists jobs)
	@$(MAKE) --no-print-directory _reproduce STUDY=b2n

reproduce-b2b: setup ## Base-to-base study, 11 datasets x 3 seeds (DATA=, PAIR=, GPUS=, SLURM=1 PARTITION=, DOWNLOAD=1, DRY_RUN=1 lists jobs)
	@$(MAKE) --no-print-directory _reproduce STUDY=b2b

reproduce-fewshot: setup ## Few-shot study, 1/2/4/8/16 shots x 11 datasets x 3 seeds (165 jobs; same options; curves in the report)
	@$(MAKE) --no-print-directory _reproduce STUDY=fewshot

reproduce-xd: setup ## Cross-dataset study, ImageNet -> 10 datasets, 3 seeds (3 jobs; same options)
	@$(MAKE) --no-print-directory _reproduce STUDY=xd DATA_CHECK=experiment=xd

reproduce-dg: setup ## Domain generalisation, ImageNet -> V2/Sketch/A/R, 3 seeds (3 jobs, reuse reproduce-xd's training; same options)
	@$(MAKE) --no-print-directory _reproduce STUDY=dg DATA_CHECK=experiment=dg

# the datasets a study needs: the 11 of the studies by default; xd / dg: ImageNet and the setting's targets
DATA_CHECK ?= dataset=all --only-study
_reproduce:
ifeq ($(DRY_RUN),1)
	$(RUN) transmiter -m experiment=$(STUDY) paths.data_dir=$(DATA) pair=$(PAIR) dry_run=true
else
	$(RUN) transmiter data check $(DATA_CHECK) paths.data_dir=$(DATA)
	$(RUN) transmiter weights check pair=$(PAIR) $(if $(filter 1,$(DOWNLOAD)),--allow-download,)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-0} $(RUN) transmiter -m experiment=$(STUDY) $(STUDY_ARGS)
	$(RUN) transmiter report outputs/studies/$(STUDY) --out outputs/studies/$(STUDY)/report --study $(STUDY) --readme experiments/$(STUDY)/README.md
endif

wandb-sync: setup ## Upload offline wandb runs (found under outputs/) to wandb.ai
	@find outputs -type d -name 'offline-run-*' -print0 | xargs -0 -r -n 20 $(RUN) wandb sync

BENCH_ARGS ?=
BENCH_THREADS ?= 1
.PHONY: bench gpu-check
gpu-check: setup ## GPU figures (ViT-B-16/L-14 FT and Skip Tuning steps, ViT-L-14 images/s vs the card's peak, TransMiter on 100k x 1024 logits; sized for under 8 min on one H200, not yet run on a GPU) -> experiments/bench/README.md; without CUDA: one "skipped" line, exit 0
	$(RUN) python -m bench.gpu --write experiments/bench/README.md

bench: setup ## Benchmark suite (ratios side by side, ~5 min on 2 CPU cores) -> experiments/bench/README.md; BENCH_ARGS="--quick", BENCH_THREADS=0 for torch's threads
	$(RUN) python -m bench --threads $(BENCH_THREADS) --write experiments/bench/README.md $(BENCH_ARGS)
