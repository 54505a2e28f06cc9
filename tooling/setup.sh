#!/usr/bin/env bash
# Create .venv (with pip, never uv) when missing and install sam3m4 with the pinned constraints.
# Called by `make demo` and `make test`; safe to rerun. Offline-friendly: pip only reaches PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
echo "[setup] installing sam3m4 with tooling/constraints.txt (first run takes a few minutes, ~6 GB)"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -c tooling/constraints.txt -e '.[dev]'
# Meta's SA-Co evaluators (sam3m4 saco-eval). --no-deps: sam3 0.1.4 pins huggingface-hub<2, tqdm<4.68 and
# typing_extensions<4.16, which would downgrade transformers' stack; the evaluators need only what pyproject lists.
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -c tooling/constraints.txt --no-deps sam3==0.1.4
touch "$VENV/.sam3m4-installed"
echo "[setup] ready: $VENV/bin/sam3m4"
