#!/usr/bin/env bash
# CI job: Stage 5 gates on the ExecuTorch XNNPACK flow (CPU; any Linux or macOS host).
#   bash tooling/ci/xnnpack.sh      # from the repo root, locally or in .github/workflows/acceptance.yml
# -> reports/ci-xnnpack/acceptance.html and reports/ci-xnnpack/report.md; exits non-zero when a gate fails.
set -euo pipefail
source "$(dirname "$0")/_stage5.sh"
run_stage5 xnnpack
