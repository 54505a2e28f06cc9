#!/usr/bin/env bash
# Shared body of the per-backend CI jobs (sourced by tooling/ci/{xnnpack,coreml,qnn}.sh; not run alone).
#   run_stage5 <backend>
# From the repo root: `make setup` (creates .venv with tooling/constraints.txt when missing), then the Stage 5
# acceptance gates of one backend, `pytest acceptance -m "stage5 and <backend>" --run ci-<backend>`, then
# `sam3m4 report --run ci-<backend>`. Writes reports/ci-<backend>/{acceptance.html,report.md,results.jsonl}.
# The report is rendered even when a gate fails; the exit status is pytest's (5, no test selected, is a
# failure: a gate that ran nothing passed nothing), else the report's.

run_stage5() {
  local backend=$1
  local run="ci-$backend"
  local venv=${VENV:-.venv}
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  echo "[$run] setup: make setup (VENV=$venv)"
  make setup VENV="$venv"
  echo "[$run] acceptance: pytest acceptance -m \"stage5 and $backend\" --run $run"
  local status=0
  "$venv/bin/python" -m pytest acceptance -m "stage5 and $backend" --run "$run" \
    --html="reports/$run/acceptance.html" --self-contained-html || status=$?
  if [ "$status" -eq 5 ]; then
    echo "[$run] error: no acceptance test is marked 'stage5 and $backend' (pytest exit 5)" >&2
  fi
  local report_status=0
  "$venv/bin/sam3m4" report --run "$run" || report_status=$?
  echo "[$run] outputs: reports/$run/acceptance.html reports/$run/report.md (pytest exit $status)"
  if [ "$status" -ne 0 ]; then
    return "$status"
  fi
  return "$report_status"
}
