# sam3m4: two commands do all the set-up on a fresh machine.
#   make demo   - create .venv, install, run the main job on the embedded default (sam3m4 pipeline, configs/demo.yaml)
#                 -> reports/demo/{report.md,acceptance.html}, outputs/visual_eval/demo/index.html, outputs/export/*.pte
#   make test   - create .venv, install, run unit + acceptance tests -> reports/test/
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.sam3m4-installed
DEMO_RUN ?= demo
TEST_RUN ?= test
# Stage 3 gates (acceptance/test_stage3.py: bootstrap the tiny teacher + distill, ~10 min) are left out of
# `make test` (too slow for it); `make demo` runs them on its own checkpoints, `make stage3` runs them alone.
PYTEST_ARGS ?= -n 2 -m "not stage3"
# idle OpenMP threads sleep instead of spinning: on a busy host spinning threads starve each other (see sam3m4/__init__.py)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test stage3 clean-reports

$(STAMP): pyproject.toml tooling/constraints.txt tooling/setup.sh
	bash tooling/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sam3m4 pipeline --config configs/demo.yaml run=$(DEMO_RUN)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) --run $(TEST_RUN) --fresh-results \
		--html=reports/$(TEST_RUN)/acceptance.html --self-contained-html

stage3: $(STAMP)
	$(BIN)/python -m pytest acceptance/test_stage3.py --run $(TEST_RUN) \
		--html=reports/$(TEST_RUN)/acceptance.html --self-contained-html

clean-reports:
	rm -rf reports/$(DEMO_RUN) reports/$(TEST_RUN)
