# The course and its checks. `make lab` opens the course, `make test` runs every check.
# Both create .venv on first use and re-install when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
JOBS ?= 2
THREADS ?= $(if $(filter 1,$(JOBS)),$(shell nproc),1)
KERNEL_NAME := dsm-course
# JupyterLab refuses to run as root unless told.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test lint pytest nbval-nodata notebooks clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.course: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[course]"
	touch $@

$(VENV)/.test: $(VENV)/.course
	$(BIN)/python -m pip install --quiet -e ".[course,test]"
	touch $@

lab: $(VENV)/.course
	$(BIN)/python -m ipykernel install --user --name $(KERNEL_NAME) --display-name "DSM course (dsm_ref)"
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(ALLOW_ROOT)

test: lint pytest

lint: $(VENV)/.test
	$(BIN)/ruff check .

# Package tests and every notebook (nbval, lax mode), whole notebooks per worker. One thread per
# worker: two workers with two OpenMP threads each on two cores run ~10x slower, not 2x.
pytest: $(VENV)/.test
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) MPLBACKEND=Agg $(BIN)/python -m pytest -n $(JOBS) --dist loadfile \
		tests notebooks --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# The notebooks as a newcomer without the course's CIFAR-10 copy runs them: DSM_DATA_DIR and
# DSM_CACHE_DIR point at empty folders (nothing is downloaded; the notebooks fall back or skip).
nbval-nodata: $(VENV)/.test
	empty=$$(mktemp -d) && trap 'rm -rf "$$empty"' EXIT && mkdir "$$empty/data" "$$empty/cache" && \
	DSM_DATA_DIR="$$empty/data" DSM_CACHE_DIR="$$empty/cache" \
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) MPLBACKEND=Agg $(BIN)/python -m pytest -n $(JOBS) --dist loadfile \
		notebooks --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Re-executes every notebook in place: the one way committed outputs are produced.
notebooks: $(VENV)/.course
	MPLBACKEND=module://matplotlib_inline.backend_inline $(BIN)/jupyter nbconvert \
		--to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 \
		--ExecutePreprocessor.kernel_name=python3 notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
