# sam3m4: two commands do all the set-up on a fresh machine.
#   make demo   - create .venv, install, run the main job on the embedded default -> reports/demo/
#   make test   - create .venv, install, run unit + acceptance tests -> reports/test/
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.sam3m4-installed
DATA     ?= data/synth
DEMO_RUN ?= demo
TEST_RUN ?= test
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test clean-reports

$(STAMP): pyproject.toml tooling/constraints.txt tooling/setup.sh
	bash tooling/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sam3m4 data synth --out $(DATA) --images 600 --videos 24 --seed 0
	$(BIN)/sam3m4 eval --model gt --data $(DATA) --split val --run $(DEMO_RUN)
	$(BIN)/sam3m4 report --run $(DEMO_RUN)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) --run $(TEST_RUN) --fresh-results \
		--html=reports/$(TEST_RUN)/acceptance.html --self-contained-html

clean-reports:
	rm -rf reports/$(DEMO_RUN) reports/$(TEST_RUN)
