# The two commands (see README):
#   make book   reproduce the book: venv, install, data, execute every chapter, HTML
#   make test   every test tier: book build, unit, papermill (smoke), nbval, browser
#   make lab    JupyterLab on book/ with the project's kernel (optional requirements-lab.txt)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
INSTALLED := $(VENV)/.installed

.PHONY: help install data execute html book test test-unit test-papermill test-nbval test-browser run lab clean

help:
	@sed -n '2,4p' Makefile

$(INSTALLED): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-cache-dir -r requirements.txt
	$(BIN)/python -m pip install --no-cache-dir --no-deps -e .
	@touch $@
	@echo "environment ready: $(abspath $(VENV))"

install: $(INSTALLED)

data: $(INSTALLED)
	$(BIN)/python -m rec_lib fetch-data

execute: data
	$(BIN)/python -m rec_lib execute
	@echo "executed notebooks: $(CURDIR)/book/*.ipynb; ledgers: $(CURDIR)/results/"

html: $(INSTALLED)
	rm -rf _build/html _build/.doctrees
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "HTML: $(CURDIR)/_build/html/index.html"

book: execute html

test: data
	@bash tests/run_tiers.sh all

test-unit test-papermill test-nbval test-browser: data
	@bash tests/run_tiers.sh $(subst test-,,$@)

# Execute chapters by hand: JupyterLab from the project's environment, opened on book/,
# with the project's kernel registered and the pinned numerics (rec_lib.numerics) exported.
LAB := $(VENV)/.lab-installed
$(LAB): requirements-lab.txt $(INSTALLED)
	$(BIN)/python -m pip install --no-cache-dir -r requirements-lab.txt
	$(BIN)/python -m ipykernel install --prefix $(abspath $(VENV)) --name python3 --display-name "Python 3 (rec_lib)"
	@touch $@

lab: data $(LAB)
	eval "$$($(BIN)/python -m rec_lib numerics --shell)"; \
	  $(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR)/book $(LAB_ARGS)

# Rerun one chapter (README): make run CHAPTER=sml [SCALE=paper] [PARAMS="SEED=1 DEVICE=cuda"]
SCALE ?= paper
run: data
	@test -n "$(CHAPTER)" || { echo 'usage: make run CHAPTER=<name> [SCALE=paper] [PARAMS="NAME=VALUE ..."]'; \
	  $(BIN)/python -m rec_lib run --list; exit 2; }
	$(BIN)/python -m rec_lib run $(CHAPTER) --scale $(SCALE) $(foreach p,$(PARAMS),-p $(p))

clean:
	rm -rf _build runs .pytest_cache
