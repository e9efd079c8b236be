# The README's two commands: `make study` installs and runs the study, `make test` installs and runs every test.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?=#         a local mnist.npz (e.g. ../shared/data/mnist.npz); empty: Keras's cache, downloaded when absent
ARGS ?=#         more Hydra overrides for `make study`
PYTEST_ARGS ?=#  e.g. PYTEST_ARGS='-m "not slow"' for the fast subset

.PHONY: install install-test study test

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

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

study: install
	$(PY) -m mnist_tracking.train experiment=study $(if $(DATA),data.path=$(DATA)) $(ARGS)

# The tests marked `backends` (training, model logging, resuming, the callback) again on the other Keras backend;
# the suite's own run uses the config's default.
OTHER_BACKEND = $(if $(filter jax,$(shell $(PY) -c "from omegaconf import OmegaConf; print(OmegaConf.load('conf/config.yaml').backend)")),tensorflow,jax)

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)
	KERAS_BACKEND=$(OTHER_BACKEND) $(PY) -m pytest -m "backends and not slow"
