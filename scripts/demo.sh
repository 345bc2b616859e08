#!/usr/bin/env bash
# The demo: baseline (MNLI -> XNLI) against X-STILTs (QQP -> MNLI -> XNLI) on the offline model and
# the real data in ../shared/data, evaluated on all 15 XNLI languages, run through the service in
# embedded mode: `xstilts serve` (SQLite, stages in a background thread), two POSTs, progress while
# polling, then a side-by-side table built from the metrics JSON. Sets everything up first.
# Finished stages are reused, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export XSTILTS_DATA_DIR=${XSTILTS_DATA_DIR:-$(cd .. && pwd)/shared/data}
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

port=${XSTILTS_DEMO_PORT:-8765}
url="http://127.0.0.1:$port"
home=${XSTILTS_HOME:-$HOME/.xstilts}
mkdir -p results "$home"
xstilts serve --port "$port" 2> "$home/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fs "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$home/serve.log" >&2; exit 1; }
  sleep 0.5
done
echo "service up at $url (API docs: $url/docs)"

xstilts submit examples/demo-baseline.yaml --url "$url" --wait --json results/demo-baseline.json
xstilts submit examples/demo-xstilts.yaml --url "$url" --wait --json results/demo-xstilts.json
echo
echo "== X-STILTs vs baseline: XNLI accuracy per language and the spread over non-English languages,"
echo "   each change with a paired 95% interval and a p-value (one seed a side: see the warning) =="
xstilts compare results/demo-baseline.json results/demo-xstilts.json
