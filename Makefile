# Two entry points for a fresh machine: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/dermaseg data synth --out $(DEMO)/data --n 24 --size 384 --seed 0
	$(BIN)/dermaseg data check $(DEMO)/data
	@echo "Demo dataset: $(DEMO)/data (photos, masks, manifest.json with the true areas and tones)"

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .ruff_cache
