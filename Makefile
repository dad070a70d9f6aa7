# Set-up and the two jobs of the README. `make demo` and `make test` each install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel first, so that pip never pulls a CUDA build (override on a GPU machine).
TORCH_SPEC ?= torch==2.13.0
OUT ?= out/demo

MINUTES ?= 120

.PHONY: install demo test bench train-more clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@python3 -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 14) else 1)' || { \
	  echo "marionette needs Python 3.10 to 3.14, not $$(python3 -V); install one and put it first on PATH as python3" >&2; exit 1; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: install
	$(VENV)/bin/marionette demo --out $(OUT)

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/marionette bench all

# one training sitting of MINUTES that replaces the shipped generator only if it beats it (tools/train_more.sh)
train-more: install
	MINUTES=$(MINUTES) PYTHON=$(PY) tools/train_more.sh

clean:
	rm -rf $(VENV) out
