# Two commands for a fresh machine: `make run` (the app on the bundled sample) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKSPACE ?= workspaces/sample
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: setup sample run test test-fast browser

# The package, its extras and the pinned versions CI passed with (constraints.txt); no download
# cache: PyPI's CUDA wheels that torchvision needs would take their several GB on disk twice.
$(VENV)/.installed: pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -c constraints.txt -e ".[dev,scale]"
	touch $@

setup: $(VENV)/.installed

# The sample is prepared only in a new workspace or the sample's own: WORKSPACE=path/to/your/own opens it as it is.
sample: setup
	@if $(PY) -c "import sys; from serieslabeler.demo import is_sample_workspace; sys.exit(not is_sample_workspace(sys.argv[1]))" "$(WORKSPACE)"; \
	then $(VENV)/bin/serieslabeler demo --workspace "$(WORKSPACE)"; \
	else echo "$(WORKSPACE) holds a collection of its own: opening it as it is, without preparing the sample"; fi

run: sample
	LABELER_WORKSPACE=$(WORKSPACE) $(PY) -m streamlit run dashboard/app.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true

test: setup
	$(PY) -m pytest -q

# The quick subset (no network training): under 3 minutes.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Debian's Chromium for the end-to-end browser test (needs root; .ci/run does this itself).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
