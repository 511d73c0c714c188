# The README's two commands. Each creates .venv when absent and installs the package
# (editable, with its extras) before running, so on a fresh machine they are all the set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch/torchvision releases that lie on this workplace's disk (pip takes them without
# downloading); any torch>=2.0 works for users.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install clean gpu-wheels

$(VENV)/.installed: setup.cfg pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[all]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/hgrnn demo

test: install
	$(PY) -m pytest -q tests

# The lent GPU machine has torch but no PyAV and no package registry: its wheel (abi3,
# Python >= 3.11, x86-64 Linux) goes into .whl/, which benchmarks/gpu_check.sh installs there.
AV_PIN ?= av==18.1.0
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  -d .whl $(AV_PIN)

clean:
	rm -rf $(VENV) demo_out .pytest_cache
