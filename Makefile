# make demo | test | bench | lint | docs: each creates .venv when missing (Python >= 3.11 needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# tmtccmd, an independent PUS library, builds the time-tagged TC[11,4] of the ST[11] interop
# tests. Version 8.2.0 pins spacepackets~=0.28 (and cfdp-py <=0.28), yet its ST[11] helpers work
# with the spacepackets the dev set-up has: its own dependencies go in as usual, it and cfdp-py
# without theirs, so that pip leaves that spacepackets alone.
TMTCCMD_DEPS := deprecated deprecation colorlog colorama cobs prompt-toolkit dle-encoder
TMTCCMD := tmtccmd==8.2.0 cfdp-py==0.5.1

.PHONY: demo test bench fuzz lint docs clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "make: Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check $(TMTCCMD_DEPS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(TMTCCMD)
	@# dle-encoder 0.2.3 installs its own tests as a top-level package `tests`, which takes the
	@# place of this repository's in the processes the tests start (the worker's test handlers).
	$(PY) -c 'import pathlib, shutil, sysconfig; p = pathlib.Path(sysconfig.get_paths()["purelib"], "tests"); (p / "test_dle_encoder.py").exists() and shutil.rmtree(p)'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tools.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The generated dictionary reference, XTCE export and ground station API description (checked
# in; tests fail when they are stale).
docs: $(STAMP)
	$(PY) -m tools.dictionary_export all docs
	$(PY) -m tools.api_export docs/ground-api.json

# Lint and the unit tests run beside the HIL tests, which mostly wait on the paced link: the
# suite takes the HIL part's time, not the sum. The unit part's output comes after the HIL's.
test: $(STAMP)
	@( $(MAKE) --no-print-directory lint && \
	   $(PY) -m pytest -m "not slow" tests/unit tests/fuzz ) > .test-unit.log 2>&1 & unit=$$!; \
	$(PY) -m pytest -m "not slow" --durations=15 tests/hil; hil=$$?; \
	wait $$unit; unit=$$?; \
	echo "==================== lint, unit and fuzz tests ===================="; \
	cat .test-unit.log; \
	test $$hil -eq 0 && test $$unit -eq 0

bench: $(STAMP)
	$(PY) -m pytest -s tests/bench
	$(PY) -m pytest -m slow --ignore=tests/bench tests || test $$? -eq 5  # 5: none collected

# 1,000,000 mutated inputs per decoder (about 10 minutes on 2 cores); findings go to
# fuzz-findings/. `make fuzz FUZZ_ENGINE=atheris` for coverage-guided fuzzing where it installs.
FUZZ_INPUTS ?= 1000000
FUZZ_ENGINE ?= random
fuzz: $(STAMP)
	@test "$(FUZZ_ENGINE)" != atheris || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[fuzz]'
	$(PY) -m tools.fuzz --inputs $(FUZZ_INPUTS) --engine $(FUZZ_ENGINE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
