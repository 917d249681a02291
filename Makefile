# Two commands for a fresh machine: `make run` (the app on the bundled sample) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKSPACE ?= workspaces/sample
PORT ?= 8501

.PHONY: setup sample run test browser

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

sample: setup
	$(PY) -m pipeline demo --workspace $(WORKSPACE)

run: sample
	LABELER_WORKSPACE=$(WORKSPACE) $(PY) -m streamlit run dashboard/app.py --server.port $(PORT) --server.headless true

test: setup
	$(PY) -m pytest -q

# Debian's Chromium for the end-to-end browser test (needs root; .ci/run does this itself).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
