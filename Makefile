# The two set-up commands: `make run` (the tutor, on the embedded defaults) and
# `make test` (the whole suite). Both install what they need on a fresh machine:
# Debian packages, a virtual environment with the Python packages, and the
# page's front-end packages from npm (served locally, never from a CDN).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB := assets/web
WEB_STAMP := $(WEB)/node_modules/.package-lock.json
DEBIAN_PACKAGES := libportaudio2 espeak-ng
DEBIAN_TEST_PACKAGES := chromium
# Learner voices for the latency benchmarks: recorded human speech (alsa-utils' prompts,
# codec2-examples' test speech) and flite's voices built from CMU Arctic recordings.
DEBIAN_BENCH_PACKAGES := alsa-utils codec2-examples flite
PIPECAT := .venv-pipecat

.PHONY: run test bench-deps

$(STAMP): pyproject.toml
	@./.ci/debian-packages $(DEBIAN_PACKAGES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || ./.ci/debian-packages nodejs npm
	npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error

run: $(STAMP) $(WEB_STAMP)
	$(BIN)/voice-tutor serve

test: $(STAMP) $(WEB_STAMP)
	@./.ci/debian-packages $(DEBIAN_TEST_PACKAGES)
	$(BIN)/python -m pytest -q

bench-deps: $(STAMP)
	@./.ci/debian-packages $(DEBIAN_BENCH_PACKAGES)

# Pipecat for benchmarks/side_by_side.py --pipecat, in its own environment (its pins may clash with ours).
$(PIPECAT):
	$(PYTHON) -m venv $(PIPECAT)
	$(PIPECAT)/bin/python -m pip install --quiet "pipecat-ai[silero,whisper,piper]==1.14.0" rapidfuzz text2num fsrs
