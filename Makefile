# Two commands matter: `make prepare-data` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUTPUT ?= out/sample
INPUT ?=
CONFIG ?=
PYTEST_ARGS ?=

.PHONY: install test prepare-data reproduce-mini bench-data bench-download bench-train bench-jpeg lint clean

install: $(STAMP)

$(STAMP): infra/install.sh packages/tvts-data/pyproject.toml packages/tvts-train/pyproject.toml
	bash infra/install.sh
	touch $(STAMP)

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# No INPUT: generate the sample corpus (moving shapes, espeak-ng speech, YouTube-format captions) and
# build it into out/sample. With INPUT=... OUTPUT=...: build the user's videos, IDs or manifest.
prepare-data: install
ifeq ($(INPUT),)
	$(PY) -m tvts_data.synth sample out/sample-src
	$(VENV)/bin/tvts-data prepare --input out/sample-src --output $(OUTPUT) --config infra/data/sample.yaml
	$(VENV)/bin/tvts-data inspect $(OUTPUT)
else
	$(VENV)/bin/tvts-data prepare --input $(INPUT) --output $(OUTPUT) $(if $(CONFIG),--config $(CONFIG))
endif

# The paper's claim in miniature (docs/reproduction.md): narrated world -> prepare -> pretrain every
# objective of Tables 2 and 3 x 3 seeds -> evaluate -> report. ~1 hour on 2 cores; QUICK=1: minutes.
REPRO_OUT ?= out/reproduce-mini$(if $(QUICK),-quick)
reproduce-mini: install
	$(PY) reproduce/mini.py --out $(REPRO_OUT) --setting $(if $(QUICK),quick,full)

bench-data: install
	$(PY) bench/bench_data.py --out bench/results/data.json

bench-download: install
	$(PY) bench/bench_download.py --out bench/results/download.json

bench-train: install
	$(PY) bench/bench_train.py --out bench/results/train.json

bench-jpeg: install
	$(PY) bench/bench_jpeg_quality.py --out bench/results/jpeg_quality.json

clean:
	rm -rf out runs .pytest_cache
