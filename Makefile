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
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/dermaseg data synth --out $(DEMO)/data --n 160 --size 256 --seed 0
	$(BIN)/dermaseg data check $(DEMO)/data
	$(BIN)/dermaseg train --config synthetic-demo data=$(DEMO)/data runs_dir=$(DEMO)/runs
	$(BIN)/dermaseg eval $(DEMO)/runs/synthetic-demo/weights/best.safetensors --data $(DEMO)/data --split test
	$(BIN)/dermaseg export $(DEMO)/runs/synthetic-demo/weights/best.safetensors --out $(DEMO)/model.onnx
	$(BIN)/dermaseg model info $(DEMO)/model.onnx
	$(BIN)/dermaseg data synth --out $(DEMO)/clinic --n 6 --size 256 --seed 1 --marker-fraction 1
	$(BIN)/dermaseg plan $(DEMO)/clinic/images --model $(DEMO)/model.onnx --out $(DEMO)/plans
	@echo "Demo: data $(DEMO)/data, run $(DEMO)/runs/synthetic-demo (metrics.csv, curves.png, overlays/), model $(DEMO)/model.onnx"
	@echo "Treatment plans of 6 new synthetic photos: open $(DEMO)/plans/index.html"

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .ruff_cache
