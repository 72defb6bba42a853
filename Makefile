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

.PHONY: lab test lint pytest browser nbval-nodata notebooks clean-venv

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

test: lint pytest browser

lint: $(VENV)/.test
	$(BIN)/ruff check .

# Package tests and every notebook (nbval, lax mode), whole notebooks per worker. One thread per
# worker: two workers with two OpenMP threads each on two cores run ~10x slower, not 2x.
pytest: $(VENV)/.test
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) MPLBACKEND=Agg $(BIN)/python -m pytest -n $(JOBS) --dist loadfile \
		-m "not browser" tests notebooks --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# The widget notebooks in JupyterLab, driven in headless Chromium (tests/test_browser.py): alone,
# after the rest, so that the slider timings it prints are not taken on busy cores. Skipped, with
# the reason, without Playwright (the test extra) or a Chromium binary (apt-get install chromium);
# DSM_BROWSER_TESTS=require (CI) turns that into a failure.
browser: $(VENV)/.test
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -m browser tests/test_browser.py \
		-rs -p no:cacheprovider

# The notebooks as a newcomer without the course's CIFAR-10 copy runs them: DSM_DATA_DIR and
# DSM_CACHE_DIR point at empty folders (nothing is downloaded; the notebooks fall back or skip).
nbval-nodata: $(VENV)/.test
	empty=$$(mktemp -d) && trap 'rm -rf "$$empty"' EXIT && mkdir "$$empty/data" "$$empty/cache" && \
	DSM_DATA_DIR="$$empty/data" DSM_CACHE_DIR="$$empty/cache" \
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) MPLBACKEND=Agg $(BIN)/python -m pytest -n $(JOBS) --dist loadfile \
		notebooks --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Re-executes every notebook in place: the one way committed outputs are produced
# (`make notebooks NOTEBOOKS=notebooks/02_spectrum_interactive.ipynb` for one). The kernel is this
# venv's python3; the stored kernelspec stays the course kernel's (nbconvert does not rewrite it).
# No widget state is stored: JupyterLab does not restore it, so a widget view in a reopened
# notebook would read "Error displaying widget: model not found". strip_widget_outputs removes
# metadata.widgets and the widget views from the outputs (nbconvert's store_widget_state=False
# fails on an Output widget: KeyError in nbclient's output hook); the static figure after each
# widget is its offline view.
NOTEBOOKS ?= notebooks/*.ipynb
notebooks: $(VENV)/.course
	MPLBACKEND=module://matplotlib_inline.backend_inline $(BIN)/jupyter nbconvert \
		--to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 \
		--ExecutePreprocessor.kernel_name=python3 $(NOTEBOOKS)
	$(BIN)/python -c 'import sys; from dsm_ref.viz import strip_widget_outputs as s; s(sys.argv[1:])' \
		$(NOTEBOOKS)

clean-venv:
	rm -rf $(VENV)
