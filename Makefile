# The README's two commands: `make study` installs and runs the study, `make test` installs and runs every test.
PYTHON ?= python3.11
VENV ?= .venv
BASE_VENV ?= .venv-base#  the base install alone (what `make study` installs) plus pytest: `make test`'s last stage
PY := $(VENV)/bin/python
DATA ?=#         a local mnist.npz (e.g. ../shared/data/mnist.npz); empty: Keras's cache, downloaded when absent
ARGS ?=#         more Hydra overrides for `make study`
PYTEST_ARGS ?=#  e.g. PYTEST_ARGS='-m "not slow"' for the fast subset
WORKERS ?= 2#   pytest-xdist processes for the first two stages (tests are isolated; the team-server ones share a stack)

.PHONY: install install-test install-base study test lint docs docs-figures

# The study needs the project alone (JAX, no TensorFlow: a JAX run then never imports it); the tests need every
# extra, TensorFlow included (they train on both backends).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(BASE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BASE_VENV)/bin/python -m pip install --quiet -e '.[pytest]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

install-base: $(BASE_VENV)/.installed

study: install
	$(PY) -m mnist_tracking.train experiment=study $(if $(DATA),data.path=$(DATA)) $(ARGS)

# The tests marked `backends` (training, model logging, resuming, the callback) again on the other Keras backend;
# the suite's own run uses the config's default.
OTHER_BACKEND = $(if $(filter jax,$(shell $(PY) -c "from omegaconf import OmegaConf; print(OmegaConf.load('conf/config.yaml').backend)")),tensorflow,jax)

# Last, what the docs show for the base install, in a venv that has only that (no TensorFlow), as a user's shell
# would run it (no KERAS_BACKEND).
test: install-test install-base lint
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup $(PYTEST_ARGS)
	KERAS_BACKEND=$(OTHER_BACKEND) $(PY) -m pytest -n $(WORKERS) -m "backends and not slow"
	env -u KERAS_BACKEND MNIST_TRACKING_BASE_INSTALL=1 $(BASE_VENV)/bin/python -m pytest -m base_install
	$(VENV)/bin/mkdocs build --strict --site-dir $$(mktemp -d)

# What the pre-commit hooks run (.pre-commit-config.yaml), checking only: the linter, the formatter, the type checker.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The docs site at http://127.0.0.1:8000, rebuilt as pages change.
docs: install-test
	$(VENV)/bin/mkdocs serve

# Runs the documented experiments into a temporary store and writes docs/results.md and every image the docs show
# (the UI's screenshots through ../shared/tools/ui-check, and ui_epoch_images.png through
# scripts/ui_epoch_images.js). DATA: the full mnist.npz.
docs-figures: install-test
	$(PY) scripts/docs_figures.py --data-path $(or $(DATA),$(error docs-figures needs DATA=path/to/mnist.npz))
