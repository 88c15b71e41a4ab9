# The two commands (see README):
#   make book   reproduce the book: venv, install, data, execute every chapter, HTML
#   make test   every test tier: book build, unit, papermill (smoke), nbval, browser
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
INSTALLED := $(VENV)/.installed

.PHONY: help install data execute html book test test-unit test-papermill test-nbval test-browser run clean

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

# Rerun one chapter (README): make run CHAPTER=sml [SCALE=paper] [PARAMS="SEED=1 DEVICE=cuda"]
SCALE ?= paper
run: data
	@test -n "$(CHAPTER)" || { echo 'usage: make run CHAPTER=<name> [SCALE=paper] [PARAMS="NAME=VALUE ..."]'; \
	  $(BIN)/python -m rec_lib run --list; exit 2; }
	$(BIN)/python -m rec_lib run $(CHAPTER) --scale $(SCALE) $(foreach p,$(PARAMS),-p $(p))

clean:
	rm -rf _build runs .pytest_cache
