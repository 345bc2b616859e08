#!/usr/bin/env bash
# The demo: baseline (MNLI -> XNLI) against X-STILTs (QQP -> MNLI -> XNLI) on the offline model and
# the real data in ../shared/data, evaluated on all 15 XNLI languages, then a side-by-side table.
# Sets everything up first. Finished stages are reused, so a second run is instant.
set -euo pipefail
cd "$(dirname "$0")/.."
export XSTILTS_DATA_DIR=${XSTILTS_DATA_DIR:-$(cd .. && pwd)/shared/data}
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
mkdir -p results
xstilts run examples/demo-baseline.yaml --json results/demo-baseline.json
xstilts run examples/demo-xstilts.yaml --json results/demo-xstilts.json
echo
echo "== baseline vs X-STILTs (XNLI accuracy %, per language; spread over non-English languages) =="
xstilts compare results/demo-baseline.json results/demo-xstilts.json
