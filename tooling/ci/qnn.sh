#!/usr/bin/env bash
# CI job: Stage 5 gates on the Qualcomm QNN flow (HTP); needs the QNN / QAIRT SDK.
#   QNN_SDK_ROOT=/opt/qcom/aistack/qairt/<version> bash tooling/ci/qnn.sh     # from the repo root
# In .github/workflows/acceptance.yml it runs on a self-hosted runner (label `qnn`) whose environment
# exports QNN_SDK_ROOT. -> reports/ci-qnn/acceptance.html and reports/ci-qnn/report.md.
set -euo pipefail
if [ -z "${QNN_SDK_ROOT:-}" ]; then
  echo "[ci-qnn] error: QNN_SDK_ROOT is not set; export it to the Qualcomm QNN/QAIRT SDK folder" \
       "(e.g. /opt/qcom/aistack/qairt/<version>)" >&2
  exit 2
fi
if [ ! -d "$QNN_SDK_ROOT" ]; then
  echo "[ci-qnn] error: QNN_SDK_ROOT=$QNN_SDK_ROOT is not a folder" >&2
  exit 2
fi
source "$(dirname "$0")/_stage5.sh"
run_stage5 qnn
