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
touch "$VENV/.sam3m4-installed"
echo "[setup] ready: $VENV/bin/sam3m4"
