# The README's commands. `make setup` once, then `make demo` (the main job on the embedded
# digits data) and `make test`. Everything runs inside .venv; activate it to call `enastool`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch is installed first, so that the project's `torch` requirement pulls nothing more.
# Here (and in CI) the pin resolves to the local CPU wheel; elsewhere choose the build:
#   make setup TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu'   (CPU)
#   make setup TORCH='torch==2.13.0 --index-url <your CUDA wheel index>'                (GPU)
TORCH ?= torch==2.13.0

.PHONY: setup test demo bench graphviz

setup: $(BIN)/enastool

$(BIN)/enastool: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@$(MAKE) --no-print-directory graphviz
	@touch $@

# Graphviz's dot draws png/svg/pdf (.dot files need nothing). Installed here when we may
# (root with apt-get); otherwise a note says what to install.
graphviz:
	@command -v dot >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; } \
	  || echo "note: install Graphviz for png/svg/pdf pictures (apt-get install graphviz, brew install graphviz or conda install graphviz)"

test: setup
	$(BIN)/python -m pytest

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

bench: setup
	$(BIN)/python benchmarks/bench_nn.py --device auto
