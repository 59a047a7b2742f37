# The two set-up commands: `make run` (the tutor, on the embedded defaults) and
# `make test` (the whole suite). Both install what they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := libportaudio2 espeak-ng

.PHONY: run test

$(STAMP): pyproject.toml
	@./.ci/debian-packages $(DEBIAN_PACKAGES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/voice-tutor talk

test: $(STAMP)
	$(BIN)/python -m pytest -q
