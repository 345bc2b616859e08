#!/usr/bin/env bash
# The demo: baseline (MNLI -> XNLI) against X-STILTs (SNLI -> MNLI -> XNLI) on the offline model and
# the real data in ../shared/data, evaluated on all 15 XNLI languages, run through the service in
# embedded mode: `xstilts serve` (SQLite, stages in a background thread), two POSTs, progress while
# polling, then the paired comparison with intervals and a verdict in words. Sets everything up
# first. Finished stages are reused, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
phase() { echo; echo "== [$1/5 $2, at $((SECONDS - start)) s] $3"; }

phase 1 set-up ".venv, xstilts and the offline model (minutes the first time, then seconds)"
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

port=${XSTILTS_DEMO_PORT:-8765}
url="http://127.0.0.1:$port"
home=${XSTILTS_HOME:-$HOME/.xstilts}
mkdir -p results "$home"
phase 2 service "xstilts serve on $url (embedded: SQLite in $home, stages in the server)"
xstilts serve --port "$port" 2> "$home/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fs "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$home/serve.log" >&2; exit 1; }
  sleep 0.5
done
echo "service up at $url (API docs: $url/docs; its log: $home/serve.log)"

phase 3 baseline "MNLI -> XNLI: 63 training steps, then 6,000 predictions (15 languages x 400)"
xstilts submit examples/demo-baseline.yaml --url "$url" --wait --json results/demo-baseline.json
phase 4 X-STILTs "SNLI -> MNLI -> XNLI: 63 intermediate steps, 63 target steps, 6,000 predictions"
xstilts submit examples/demo-xstilts.yaml --url "$url" --wait --json results/demo-xstilts.json
phase 5 comparison "XNLI accuracy per language and the spread over non-English languages, each
   change with a paired 95% interval and a p-value (one seed a side: see the warning)"
xstilts compare results/demo-baseline.json results/demo-xstilts.json
echo
echo "demo finished in $((SECONDS - start)) s"
