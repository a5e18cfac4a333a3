# Quick start:  make demo   (main job)   |   make test   (test suite)
# Both create and fill a local .venv unless a virtual environment is already active.

SHELL := /bin/bash
PYTHON_SYS ?= python3
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(CURDIR)/.venv
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.espnet_otreg-installed
# pip 26.3 rejects ESPnet's ci_sdr dependency (a direct-URL extra); 23.2 .. 26.0 work.
PIP_PIN := pip>=23.2,<26.1

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench bench-step gpu-check clean

install: $(STAMP)

$(STAMP): setup.py
	@if [ ! -x "$(PY)" ]; then echo "creating $(VENV)"; $(PYTHON_SYS) -m venv "$(VENV)"; fi
	"$(PY)" -m pip install -q "$(PIP_PIN)"
	"$(PY)" -m pip install -e ".[test]"
	@touch "$@"

# The main job: the AISHELL-1 GM-OT recipe, every stage, on its synthetic mini corpus,
# then the baseline CTC, OT-CAKT and TOT-CAKT on the same data, and the RESULTS.md table
# of all four (minutes on a CPU). Outputs: egs2/aishell_gmot/asr1/mini/.
demo: $(STAMP)
	cd egs2/aishell_gmot/asr1 && PATH="$(VENV)/bin:$$PATH" ./local/mini_comparison.sh

test: $(STAMP)
	"$(PY)" -m pytest test

bench: $(STAMP)
	"$(PY)" -m espnet_otreg.bin.bench_ot

bench-step: $(STAMP)
	"$(PY)" -m espnet_otreg.bin.bench_step --model gmot
	"$(PY)" -m espnet_otreg.bin.bench_step --model slm

# Everything only a GPU can tell (bench_ot, bench_step under bf16, 20 AMP training
# steps of each model), one JSON line at the end; ~8 min on one GPU.
gpu-check: $(STAMP)
	"$(PY)" -m espnet_otreg.bin.gpu_check

clean:
	rm -rf build dist *.egg-info .pytest_cache bench_out
