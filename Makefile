# Set-up and the two entry points. `make study` and `make test` each create the virtualenv on
# first use, so a fresh machine needs nothing else.
VENV   ?= .venv
CORES  ?= 2
# TORCH: the torch requirement, installed before the package so that pip keeps it rather than
# resolving the `torch` range in pyproject.toml by itself (on Linux that can pull a multi-GB
# CUDA build). The default pins the version the test suite runs with; where pip's find-links
# offer its CPU wheel (2.13.0+cpu), that is the one installed. For a GPU machine: TORCH=torch.
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.rnnbench-installed

.PHONY: study test lint report paper clean-results setup

study: $(STAMP)                  ## the default study: config/config.yaml
	$(VENV)/bin/snakemake --cores $(CORES) --profile profiles/default

test: $(STAMP)                   ## the test suite (CPU; GPU tests skip without a GPU)
	$(VENV)/bin/pytest -q

report: $(STAMP)                 ## HTML report of the default study
	$(VENV)/bin/snakemake --profile profiles/default --report results/default/report.html

paper: $(STAMP)                  ## every curated paper table and figure, from results/curated/
	$(PY) -m rnnbench paper

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@
