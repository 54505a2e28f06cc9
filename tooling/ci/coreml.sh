#!/usr/bin/env bash
# CI job: Stage 5 gates on the Core ML flow.
#   bash tooling/ci/coreml.sh       # from the repo root, locally or in .github/workflows/acceptance.yml
# Core ML lowering (coremltools) works on Linux too, but a Core ML .pte only EXECUTES on macOS (Apple
# silicon for the Neural Engine): on another OS the gates that must run the model cannot be measured (the
# tests skip them, or fail them under --release), so run this on macOS (the workflow uses macos-14).
# -> reports/ci-coreml/acceptance.html and reports/ci-coreml/report.md; exits non-zero when a gate fails.
set -euo pipefail
if [ "$(uname -s)" != "Darwin" ]; then
  echo "[ci-coreml] note: $(uname -s) host: Core ML executes only on macOS;" \
       "gates that run the model cannot be measured here" >&2
fi
source "$(dirname "$0")/_stage5.sh"
run_stage5 coreml
