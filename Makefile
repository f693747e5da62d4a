# dnm - the two set-up commands of the README, plus developer targets.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: demo test sanitize bench clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

# create .venv, install dnm with its runtime extras, run the main job
demo: $(VPY)
	$(VPY) -m pip install --quiet -e ".[plot,pandas]"
	$(VPY) -m dnm demo

# install the test extras and run the whole suite
test: $(VPY)
	$(VPY) -m pip install --quiet -e ".[test]"
	$(VPY) -m pytest -ra

bench: $(VPY)
	$(VPY) -m pip install --quiet -e ".[test]"
	$(VPY) benchmarks/bench_score.py

clean:
	rm -rf build dnm/*.so *.egg-info
