#!/usr/bin/env bash
# Run the test suite (what CI runs): lint (ruff check, ruff format --check), types (mypy on the
# library), then pytest. Sets up .venv and starts the local Postgres and Redis first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export XSTILTS_DATA_DIR=${XSTILTS_DATA_DIR:-$(cd .. && pwd)/shared/data}
bash scripts/setup.sh
bash scripts/services.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check shared services tests bench examples
ruff format --check shared services tests bench examples
mypy shared/xstilts
python -m pytest -q "$@"
