# The README's two commands: `make study` installs and runs the study, `make test` installs and runs every test.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?=#         a local mnist.npz (e.g. ../shared/data/mnist.npz); empty: Keras's cache, downloaded when absent
ARGS ?=#         more Hydra overrides for `make study`
PYTEST_ARGS ?=#  e.g. PYTEST_ARGS='-m "not slow"' for the fast subset

.PHONY: install study test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

study: install
	$(PY) -m mnist_tracking.train experiment=study $(if $(DATA),data.path=$(DATA)) $(ARGS)

# The training tests again on the other Keras backend (the suite's own run uses the config's default).
BACKEND_TESTS := tests/test_train.py tests/test_fast.py tests/test_resume.py tests/test_callback.py
OTHER_BACKEND = $(if $(filter jax,$(shell $(PY) -c "from omegaconf import OmegaConf; print(OmegaConf.load('conf/config.yaml').backend)")),tensorflow,jax)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)
	KERAS_BACKEND=$(OTHER_BACKEND) $(PY) -m pytest -m "not slow" $(BACKEND_TESTS)
