# daer: two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_out

.PHONY: install test lint demo demo-train bench bench-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q -ra

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

demo: install
	$(VENV)/bin/daer demo --out $(DEMO_DIR)

# Trains the packaged demo model the way benchmarks/RESULTS.md measured it (30 min per mode on 2 cores, DAP off).
demo-train: install
	$(PY) -m benchmarks.bench_train --data runs/bench_train/synth-20000 --minutes 30 --set dap=false --no-diagnose \
		--eval-max 2000
	$(PY) -m benchmarks.export_model --runs runs/bench_train --mode haf --out src/daer/assets/demo_model

bench: install
	$(PY) -m benchmarks.run_all

bench-quick: install
	$(PY) -m benchmarks.run_all --quick

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build
