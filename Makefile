# The two commands a newcomer needs: `make run` and `make test` (see README).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
# Production runs Python 3.12: `make test` also runs the unit + integration tests under it when this machine
# has one (PATH, pyenv, /usr), in a second venv. Override with PYTHON312=/path/to/python3.12.
VENV312   ?= .venv312
PYTHON312 ?= $(shell for p in "$$(command -v python3.12)" $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 \
	/usr/local/bin/python3.12 /usr/bin/python3.12; do [ -x "$$p" ] && "$$p" -c 'import sys; \
	sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { echo "$$p"; break; }; done)
# Parallel pytest workers (pytest-xdist): most tests wait on child processes, sockets and timers, not the CPU,
# so four run well even on two cores. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 4
# Debian packages the tests drive: headless Chromium (Mini App e2e), shellcheck (deploy scripts),
# poppler-utils (renders the analytics PDF), fonts-dejavu-core (Cyrillic in the PDF), an emoji font
# (screenshots), Node.js + npm (Apps Script tests; usually preinstalled).
SYSTEM_PACKAGES := chromium chromium-driver shellcheck poppler-utils fonts-dejavu-core fonts-noto-color-emoji
SYSTEM_COMMANDS := chromium chromedriver shellcheck pdftoppm

.PHONY: run test test312 lint typecheck system-deps gas-deps bench lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/marketingbot local

system-deps:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$$missing node"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages (missing:$$missing)"; \
	  pkgs="$(SYSTEM_PACKAGES)"; case "$$missing" in *node*) pkgs="$$pkgs nodejs npm";; esac; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; \
	  else echo "cannot install$$missing (not root, no sudo): tests that need them will fail on CI"; fi; \
	fi

gas-deps:
	@if [ -f gas/package-lock.json ]; then cd gas && npm ci --no-audit --no-fund --loglevel=error; fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check bot gateway tests bench
	$(VENV)/bin/ruff format --check bot gateway

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

test: $(VENV)/.installed-dev system-deps gas-deps lint typecheck
	$(VENV)/bin/pytest -n $(TEST_WORKERS)
	$(MAKE) --no-print-directory test312

$(VENV312)/.installed-dev: pyproject.toml
	$(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q --upgrade pip
	$(VENV312)/bin/python -m pip install -q -e '.[dev]'
	touch $@

# The unit and integration tests under 3.12 (the e2e/browser tests run once, under the first venv: CI time).
test312:
ifeq ($(strip $(PYTHON312)),)
	@echo "python3.12 not found on this machine: the suite ran under $$($(PY) -V) only"
else
	$(MAKE) --no-print-directory $(VENV312)/.installed-dev
	$(VENV312)/bin/pytest -n $(TEST_WORKERS) tests/unit tests/integration
endif

# requirements.lock: every runtime package pinned with its sha256, resolved for production's Python 3.12;
# deploy.sh installs from it with --require-hashes. Re-run after changing a pin in pyproject.toml.
lock: $(VENV312)/.installed-dev
	$(VENV312)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --build-deps-for wheel \
	  --no-emit-index-url --no-emit-trusted-host --no-emit-find-links --output-file requirements.lock pyproject.toml

bench: $(VENV)/.installed-dev
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) -m bench.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) $(VENV312) .pytest_cache .mypy_cache .ruff_cache gas/node_modules
