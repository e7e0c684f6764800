# The two commands of the README, each setting up its own environment in .venv:
#   make run    all five notebooks on the bundled sample, into runs/<date-time>/
#   make test   every test: unit tests, the end-to-end papermill runs, and nbval on the committed notebooks
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Exact versions live in pyproject.toml (extras cpu, test, pinned).
INSTALLED := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: run test notebooks install clean

run: $(INSTALLED)
	$(BIN)/python -m seglib run $(if $(RUN_DIR),--run-dir $(RUN_DIR))

test: $(INSTALLED)
	SEGLIB_RUN_DIR=$$(mktemp -d) $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Re-execute the committed notebooks in place with their default parameters (the outputs nbval compares).
notebooks: $(INSTALLED)
	rm -rf runs/notebooks-refresh
	$(BIN)/python -m seglib run --refresh-notebooks --quiet --run-dir runs/notebooks-refresh

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,jupyter,test,pinned]"
	touch $@

clean:
	rm -rf $(VENV) runs
