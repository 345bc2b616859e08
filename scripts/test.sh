#!/usr/bin/env bash
# Run the test suite (what CI runs). Sets up .venv first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export XSTILTS_DATA_DIR=${XSTILTS_DATA_DIR:-$(cd .. && pwd)/shared/data}
bash scripts/setup.sh
bash scripts/services.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check shared services tests bench
python -m pytest -q "$@"
