# The two commands the README promises: `make run` and `make test`. Each installs what it
# needs (system packages via apt-get when missing, the venv, the project) first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: run test lint bench soak sysdeps sysdeps-test sysdeps-package clean screenshot package package-test

run: sysdeps $(STAMP_RUN)
	$(PY) -m hmi run --project config/demo.toml

test: sysdeps-test $(STAMP_DEV)
	$(VENV)/bin/ruff check hmi tests bench tools
	$(VENV)/bin/ruff format --check hmi tests bench tools
	$(PY) tools/mypy_ratchet.py
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check hmi tests bench tools
	$(VENV)/bin/ruff format --check hmi tests bench tools
	$(PY) tools/mypy_ratchet.py

bench: sysdeps-test $(STAMP_DEV)
	xvfb-run -a -s "-screen 0 1920x1080x24" $(PY) -m bench $(BENCH)

# Long soak and load runs, kept out of `make test`.
# The memory soak runs in a runner of its own without Qt or VTK loaded (see tests/soak).
soak: sysdeps-test $(STAMP_DEV)
	$(PY) -m pytest -m soak -p no:pytest-qt -p no:cacheprovider -o faulthandler_timeout=0 tests/soak $(PYTEST_ARGS)
	$(PY) -m pytest -m soak -p no:cacheprovider -o faulthandler_timeout=0 --ignore=tests/soak $(PYTEST_ARGS)

sysdeps:
	PYTHON=$(PYTHON) tools/install-system-deps.sh

sysdeps-test:
	PYTHON=$(PYTHON) tools/install-system-deps.sh --test

sysdeps-package:
	PYTHON=$(PYTHON) tools/install-system-deps.sh --package

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP_RUN) $@

# The one-folder bundle dist/hmi/ (build.spec) and the Linux archive beside it
# (docs/packaging.md). About 1-1.5 min on 2 cores, plus ~15 s for the archive.
package: sysdeps-package $(STAMP_DEV)
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN build.spec
	$(PY) tools/make_archive.py

# The archive installed outside the source tree, self-tested in a clean environment.
package-test: package
	tools/package-test.sh

# A screenshot of the running app on the demo plant, for the README.
screenshot: sysdeps-test $(STAMP_DEV)
	xvfb-run -a -s "-screen 0 1400x900x24" $(PY) tools/screenshot.py docs/screenshot.png

clean:
	rm -rf $(VENV) build dist artifacts .pytest_cache .ruff_cache .mypy_cache .hypothesis
