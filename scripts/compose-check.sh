#!/usr/bin/env bash
# The container check: build every CPU image from this repository, run the whole stack with docker
# compose on this machine (the worker on the CPU: docker-compose.cpu.yml), put a small experiment
# through the API and compare its metrics with `xstilts run` of the same spec outside containers,
# and break parts of the stack on the way: kill the worker during training, restart Redis, stop
# Postgres. Ends with `down -v` and one table: each step, its time, its outcome. Exit status 0 only
# when every step passed.
#
# It takes minutes (a first run also debootstraps a Debian and installs torch into the images),
# so .ci/run runs it only with XSTILTS_COMPOSE_CHECK=1.
#
# Needs root, Docker's daemon and its classic client with BuildKit (Debian: apt-get install
# docker.io), docker compose (the v2 plugin, or Debian's docker-compose 1.29), debootstrap, curl
# and .venv (scripts/setup.sh). No image registry: the bases the real files name (python:3.12,
# postgres:16, redis:7) are built here from Debian packages (local-bases/) and swapped in through
# build args and an override file; the real files are used as they are. The check sends requests
# only to the API's port, published on 127.0.0.1; builds reach Debian's mirror and PyPI.
#
# Settings (environment):
#   XSTILTS_COMPOSE_CHECK_DIR  kept between runs: Docker's data root (images, build cache) and logs
#                              (default /var/tmp/xstilts-compose-check); delete it for a cold run
#   XSTILTS_COMPOSE_CHECK_PORT the API's port on 127.0.0.1 (default: a free one)
#   XSTILTS_TORCH_WHEEL        the CPU torch wheel for the images (default: `pip download` in .venv)
#   XSTILTS_DATA_DIR           the data folder (default ../shared/data)
#   DEBIAN_MIRROR              for debootstrap (default http://deb.debian.org/debian)
#   DOCKER_HOST                a daemon to use; when none answers, the check starts its own
#                              dockerd (own data root and socket) and stops it at the end
#   XSTILTS_COMPOSE_CHECK_STORAGE_DRIVER  for that dockerd (default: its own choice, overlay2
#                              where the kernel has overlayfs; vfs works too, much slower)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)

STATE=${XSTILTS_COMPOSE_CHECK_DIR:-/var/tmp/xstilts-compose-check}
LOGS=$STATE/logs/$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/xstilts-compose-check.XXXXXX) # throwaway: .env, override, spec, answers
mkdir -p "$LOGS"
PY=$REPO/.venv/bin/python
DATA=$(cd "${XSTILTS_DATA_DIR:-../shared/data}" 2>/dev/null && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The classic client with BuildKit (DOCKER_BUILDKIT=1): Debian's. A newer client without buildx
# refuses BuildKit builds, so prefer /usr/bin/docker to whatever comes first on PATH.
DOCKER=$(command -v /usr/bin/docker || command -v docker || echo docker)
export DOCKER_BUILDKIT=1
PROJECT=xstilts-check
TAG=compose-check
SOCKET_DIR=/run/xstilts-compose-check
LOCAL=xstilts-local
TORCH_PIN=$(sed -n 's/.*"torch==\([^"]*\)".*/\1/p' pyproject.toml)
# The experiment: the offline model, XNLI, 16 optimiser steps with a checkpoint every 4, two
# languages. Small enough for minutes on 2 CPU cores, long enough to kill the worker mid-training.
LANGUAGES='["en", "de"]'
CHECKPOINT_EVERY=4

# --- the table ----------------------------------------------------------------------------------
ROWS=()
FAILURES=0
OUTCOME=""
now() { date +%s.%N; }
STARTED=$(now)

# step NAME FUNCTION [ARG...]: run FUNCTION (its output goes to the log), time it, keep a row with
# its OUTCOME. Returns the function's status.
step() {
    local name=$1 t0 rc seconds
    shift
    OUTCOME=""
    printf '== %s ...\n' "$name" >&2
    printf '\n==== %s\n' "$name" >>"$LOGS/check.log"
    t0=$(now)
    "$@" >>"$LOGS/check.log" 2>&1
    rc=$?
    seconds=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    if [ $rc -eq 0 ]; then
        ROWS+=("$name|$seconds|ok: $OUTCOME")
    else
        FAILURES=$((FAILURES + 1))
        ROWS+=("$name|$seconds|FAILED: ${OUTCOME:-exit status $rc}")
    fi
    printf '   %s s: %s\n' "$seconds" "${ROWS[-1]##*|}" >&2
    return $rc
}

skip() { ROWS+=("$1|-|skipped: $2"); }

print_table() {
    local row name seconds outcome
    printf '\n%-46s %8s  %s\n' "step" "seconds" "outcome"
    printf '%-46s %8s  %s\n' "----" "-------" "-------"
    for row in "${ROWS[@]}"; do
        name=${row%%|*}
        row=${row#*|}
        seconds=${row%%|*}
        outcome=${row#*|}
        printf '%-46s %8s  %s\n' "$name" "$seconds" "$outcome"
    done
    printf '%-46s %8s\n' "total" "$(awk -v a="$STARTED" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')"
    printf '\nlogs: %s\n' "$LOGS"
}

fail() {
    OUTCOME=$1
    return 1
}

# --- docker and compose -------------------------------------------------------------------------
OWN_DOCKERD=""

# Debian's packages for what is missing: the daemon and classic client, compose 1.29, debootstrap.
tools() {
    local missing=()
    [ -x /usr/sbin/dockerd ] || command -v dockerd >/dev/null || missing+=(docker.io)
    "$DOCKER" compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null ||
        missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get" || return 1
        { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
            { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends "${missing[@]}"; }; } || fail "apt-get install failed" || return 1
        DOCKER=$(command -v /usr/bin/docker || command -v docker)
        OUTCOME="installed ${missing[*]}; "
    fi
    local cc
    cc=$(compose_command)
    # shellcheck disable=SC2086 # "docker compose" is two words
    OUTCOME+="$("$DOCKER" --version), $cc $($cc version --short 2>/dev/null)"
}

start_docker() {
    if "$DOCKER" info >/dev/null 2>&1; then
        OUTCOME="using the running daemon ${DOCKER_HOST:-(default socket)}"
        return 0
    fi
    command -v dockerd >/dev/null || fail "no dockerd: apt-get install docker.io" || return 1
    mkdir -p "$STATE/docker" "$SOCKET_DIR"
    export DOCKER_HOST=unix://$SOCKET_DIR/docker.sock
    dockerd --data-root "$STATE/docker" --exec-root "$SOCKET_DIR/exec" --host "$DOCKER_HOST" \
        --pidfile "$SOCKET_DIR/dockerd.pid" \
        ${XSTILTS_COMPOSE_CHECK_STORAGE_DRIVER:+--storage-driver "$XSTILTS_COMPOSE_CHECK_STORAGE_DRIVER"} \
        >"$LOGS/dockerd.log" 2>&1 &
    OWN_DOCKERD=$!
    for _ in $(seq 1 60); do
        if "$DOCKER" info >/dev/null 2>&1; then
            OUTCOME="dockerd $("$DOCKER" version -f '{{.Server.Version}}'), storage driver"
            OUTCOME+=" $("$DOCKER" info -f '{{.Driver}}'), data root $STATE/docker"
            return 0
        fi
        kill -0 "$OWN_DOCKERD" 2>/dev/null || break
        sleep 1
    done
    fail "dockerd did not start (see $LOGS/dockerd.log)"
}

stop_docker() {
    if [ -z "$OWN_DOCKERD" ]; then
        OUTCOME="not ours: left running"
        return 0
    fi
    kill "$OWN_DOCKERD" 2>/dev/null
    for _ in $(seq 1 60); do
        kill -0 "$OWN_DOCKERD" 2>/dev/null || {
            OUTCOME="stopped"
            OWN_DOCKERD=""
            return 0
        }
        sleep 1
    done
    fail "dockerd $OWN_DOCKERD still running"
}

# The v2 plugin if the client has it, else docker-compose (Debian's is 1.29): both read the files.
compose_command() {
    if "$DOCKER" compose version >/dev/null 2>&1; then
        echo "$DOCKER compose"
    else
        echo docker-compose
    fi
}
compose() {
    local -a COMPOSE
    read -r -a COMPOSE <<<"$(compose_command)"
    "${COMPOSE[@]}" -p "$PROJECT" --env-file "$WORK/env" -f docker-compose.yml \
        -f docker-compose.cpu.yml -f "$WORK/local-bases.yml" "$@"
}
# A service's container (running or not), by compose's labels: the same with Compose 1.29 and v2.
container() {
    "$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -1
}
in_api() { "$DOCKER" exec "$(container api)" sh -c "$1"; }
sql() { "$DOCKER" exec "$(container postgres)" psql -U xstilts -d xstilts -tA -F ' ' -c "$1"; }
size_of() { "$DOCKER" image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.2f GB", $1 / 1e9 }'; }

# --- the API, on 127.0.0.1 only -----------------------------------------------------------------
# http METHOD PATH [BODY-FILE]: the status code on stdout; the body in $WORK/body, headers in
# $WORK/headers.
http() {
    local args=(--noproxy '*' -sS -m 60 -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}'
        -X "$1" -H "Authorization: Bearer $API_KEY")
    [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "@$3")
    curl "${args[@]}" "http://127.0.0.1:$PORT$2" 2>>"$LOGS/curl.log" || echo 000
}
# json EXPR: EXPR evaluated on the last body (as `b`), printed.
json() { "$PY" -c "import json, sys; b = json.load(open('$WORK/body')); print($1)"; }

write_spec() { # write_spec SEED FILE
    cat >"$2" <<EOF
{
  "name": "compose-check seed $1",
  "model": {"source": "offline:multilingual-e5-small", "pooling": "mean"},
  "target": {
    "task": "xnli",
    "training": {"learning_rate": 1e-4, "batch_size": 8, "max_train_examples": 128,
                 "max_seq_length": 64, "warmup_ratio": 0.1,
                 "checkpoint_every_steps": $CHECKPOINT_EVERY}
  },
  "evaluation": {"languages": $LANGUAGES, "max_examples_per_language": 32, "max_seq_length": 64},
  "seeds": [$1]
}
EOF
}

# wait_experiment ID TIMEOUT: poll until it leaves queued/running; its last state in $WORK/body.
wait_experiment() {
    local deadline=$((SECONDS + $2)) code status
    while [ $SECONDS -lt $deadline ]; do
        code=$(http GET "/experiments/$1")
        if [ "$code" = 200 ]; then
            status=$(json 'b["status"]')
            case $status in
                succeeded) return 0 ;;
                failed | cancelled)
                    cp "$WORK/body" "$LOGS/experiment-$1.json"
                    fail "experiment $status: $(json 'b["error"]')"
                    return 1
                    ;;
            esac
        fi
        sleep 2
    done
    cp "$WORK/body" "$LOGS/experiment-$1.json"
    fail "experiment not finished after $2 s (last answer $code)"
}

# --- the steps ----------------------------------------------------------------------------------
base_debian() {
    if "$DOCKER" image inspect "$LOCAL/debian:bookworm" >/dev/null 2>&1; then
        OUTCOME="cached, $(size_of "$LOCAL/debian:bookworm")"
        return 0
    fi
    command -v debootstrap >/dev/null || fail "no debootstrap: apt-get install debootstrap" || return 1
    local root=$STATE/debian-rootfs
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" || fail "debootstrap failed" || return 1
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$LOCAL/debian:bookworm" &&
        rm -rf "$root" || return 1
    OUTCOME="debootstrap minbase bookworm + docker import, $(size_of "$LOCAL/debian:bookworm")"
}

# build_local NAME DOCKERFILE CONTEXT: a local base image from local-bases/.
build_local() {
    "$DOCKER" build --network host -f "local-bases/$2" -t "$LOCAL/$1" "$3" || return 1
    OUTCOME="$LOCAL/$1, $(size_of "$LOCAL/$1")"
}

base_python() {
    # pip inside the builds reaches PyPI through whatever this machine trusts: its CA bundle.
    local bundle=${PIP_CERT:-$("$PY" -m pip config get global.cert 2>/dev/null)}
    mkdir -p "$WORK/python-context"
    cp "${bundle:-/etc/ssl/certs/ca-certificates.crt}" "$WORK/python-context/ca-bundle.crt" || return 1
    build_local python:3.11-bookworm python.Dockerfile "$WORK/python-context"
}

torch_wheel() {
    local wheel=${XSTILTS_TORCH_WHEEL:-}
    mkdir -p "$STATE/torch-wheel"
    if [ -z "$wheel" ]; then
        wheel=$(ls "$STATE"/torch-wheel/torch-"$TORCH_PIN"+cpu-*.whl 2>/dev/null | head -1)
    fi
    if [ -z "$wheel" ]; then
        "$PY" -m pip download --no-deps --dest "$STATE/torch-wheel" "torch==$TORCH_PIN" || return 1
        wheel=$(ls "$STATE"/torch-wheel/torch-"$TORCH_PIN"*.whl | head -1)
    fi
    case $(basename "$wheel") in
        torch-"$TORCH_PIN"+cpu-*.whl) ;;
        *) fail "$wheel is not a CPU build of torch $TORCH_PIN: set XSTILTS_TORCH_WHEEL" || return 1 ;;
    esac
    rm -rf "$WORK/wheel-context" && mkdir -p "$WORK/wheel-context"
    ln "$wheel" "$WORK/wheel-context/" 2>/dev/null || cp "$wheel" "$WORK/wheel-context/"
    build_local "torch-wheels:$TORCH_PIN-cpu" torch-wheels.Dockerfile "$WORK/wheel-context" &&
        OUTCOME+=" ($(basename "$wheel"))"
}

# image TARGET: one target of services/Dockerfile, as compose builds it, on the local bases.
image() {
    "$DOCKER" build --progress=plain --network host -f services/Dockerfile --target "$1" \
        --build-arg PYTHON_IMAGE="$LOCAL/python:3.11-bookworm" \
        --build-arg TORCH_WHEELS="$LOCAL/torch-wheels:$TORCH_PIN-cpu" \
        -t "xstilts-$1:$TAG" . 2>&1 | tee "$LOGS/build-$1.log" | tail -5
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "docker build failed: see $LOGS/build-$1.log" || return 1
    local context cached
    context=$(grep -o 'transferring context: [0-9.]*[kMG]*B' "$LOGS/build-$1.log" | tail -1)
    cached=$(grep -c '^#[0-9]* CACHED' "$LOGS/build-$1.log")
    OUTCOME="xstilts-$1:$TAG, $(size_of "xstilts-$1:$TAG"), ${context#transferring }, $cached steps cached"
}

# The CPU images: a non-root user, torch without CUDA, no CUDA or NVIDIA library anywhere.
images_checked() {
    local target out
    for target in api eval; do
        out=$("$DOCKER" run --rm --network none "xstilts-$target:$TAG" sh -c '
            id -u
            python -c "import torch; print(torch.__version__, torch.version.cuda)"
            find / -xdev \( -name "libcud*" -o -name "libcublas*" -o -name "libnccl*" \
                -o -name "libnvidia*" -o -name "libcudnn*" \) 2>/dev/null | wc -l') || return 1
        echo "$target: $out"
        set -- $out
        [ "$1" != 0 ] || fail "$target runs as root" || return 1
        [ "$3" = None ] || fail "$target: torch $2 has CUDA $3" || return 1
        [ "$4" = 0 ] || fail "$target carries $4 CUDA/NVIDIA libraries" || return 1
        OUTCOME+="$target: uid $1, torch $2, 0 CUDA libraries; "
    done
    OUTCOME=${OUTCOME%; }
}

write_env() {
    PORT=${XSTILTS_COMPOSE_CHECK_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    API_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')
    local digest password
    digest=$(printf '%s' "$API_KEY" | sha256sum | cut -d' ' -f1)
    password=$("$PY" -c 'import secrets; print(secrets.token_hex(24))')
    [ -n "$DATA" ] || fail "no data folder (XSTILTS_DATA_DIR or ../shared/data)" || return 1
    cat >"$WORK/env" <<EOF
POSTGRES_PASSWORD=$password
XSTILTS_API_KEYS=check:$digest
XSTILTS_IMAGE_TAG=$TAG
XSTILTS_API_ADDRESS=127.0.0.1
XSTILTS_API_PORT=$PORT
XSTILTS_DATA_DIR=$DATA
EOF
    # The official images the real file names cannot be pulled here: the local ones stand in.
    cat >"$WORK/local-bases.yml" <<EOF
services:
  postgres:
    image: $LOCAL/postgres:15-bookworm
  redis:
    image: $LOCAL/redis:7-bookworm
EOF
    OUTCOME="$WORK/env (password, API key), API on 127.0.0.1:$PORT"
}

stack_up() {
    compose up -d --no-build || fail "compose up failed" || return 1
    local deadline=$((SECONDS + 900)) service cid state code
    while [ $SECONDS -lt $deadline ]; do
        for service in migrate models; do
            cid=$(container $service)
            state=$("$DOCKER" inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$cid" 2>/dev/null)
            case $state in "exited 0" | running* | created* | "") ;; *)
                compose logs --no-color "$service" | tail -20
                fail "$service: $state" || return 1
                ;;
            esac
        done
        cid=$(container api)
        if [ -n "$cid" ] && [ "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$cid")" = healthy ]; then
            code=$(http GET /readyz)
            if [ "$code" = 200 ]; then
                local running
                running=$("$DOCKER" ps -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
                for service in worker-cpu eval scheduler; do
                    [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$(container $service)")" = true ] ||
                        fail "$service is not running" || return 1
                done
                OUTCOME="$running containers running, migrate and models exited 0, /readyz $(json 'b')"
                return 0
            fi
        fi
        sleep 3
    done
    compose ps
    fail "the stack was not ready within 900 s"
}

# Only the API is published, on 127.0.0.1; Postgres and Redis are on the internal network alone.
network_checked() {
    local published service nets
    published=$("$DOCKER" ps --filter "label=com.docker.compose.project=$PROJECT" \
        --format '{{.Label "com.docker.compose.service"}}={{.Ports}}' | grep -- '->' | sort)
    echo "$published"
    [ "$published" = "api=127.0.0.1:$PORT->8000/tcp" ] ||
        fail "published ports: $(echo "$published" | tr '\n' ' ')" || return 1
    for service in postgres redis; do
        nets=$("$DOCKER" inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' \
            "$(container $service)")
        [ "$nets" = "${PROJECT}_backend " ] || fail "$service is on: $nets" || return 1
        [ "$("$DOCKER" network inspect -f '{{.Internal}}' "${PROJECT}_backend")" = true ] ||
            fail "${PROJECT}_backend is not internal" || return 1
    done
    OUTCOME="published: api on 127.0.0.1:$PORT only; postgres, redis on ${PROJECT}_backend (internal) only"
}

MARKER=/cache/models/multilingual-e5-small/.xstilts-offline-model.json
model_once_before() {
    MODEL_STAMP=$(in_api "stat -c '%i %Y' $MARKER") || fail "no offline model in /cache" || return 1
    compose logs --no-color models | tail -3
    OUTCOME="materialised by the models service into the cache volume (marker $MODEL_STAMP)"
}

submit_and_kill() {
    write_spec 1 "$WORK/spec-1.json"
    local code
    code=$(http POST /experiments "$WORK/spec-1.json")
    [ "$code" = 201 ] || fail "POST /experiments: $code $(head -c 300 "$WORK/body")" || return 1
    EXP1=$(json 'b["id"]')
    # Kill the worker as soon as the first checkpoint is on the artifact volume: mid-training.
    local deadline=$((SECONDS + 900))
    until in_api 'ls /artifacts/work/*/checkpoint.pt' >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "no checkpoint after 900 s" || return 1
        code=$(http GET "/experiments/$EXP1")
        case $(json 'b["status"]') in failed | succeeded | cancelled)
            fail "experiment $(json 'b["status"]') before the worker could be killed" || return 1 ;;
        esac
        sleep 0.5
    done
    "$DOCKER" kill "$(container worker-cpu)" >/dev/null || return 1
    KILLED_AT=$SECONDS
    code=$(http GET "/experiments/$EXP1")
    local progress
    progress=$(json '[s["progress"] for s in b["stages"] if s["role"] == "target"][0]')
    echo "killed; the target stage then: $progress"
    sleep 2
    compose start worker-cpu || return 1
    OUTCOME="experiment $EXP1 posted; worker killed (docker kill) after the first checkpoint, then started again"
}

resumed() {
    wait_experiment "$EXP1" 1200 || return 1
    local recovery=$((SECONDS - KILLED_AT)) target attempts steps from
    http GET "/experiments/$EXP1" >/dev/null
    target=$(json '[s for s in b["stages"] if s["role"] == "target"][0]')
    echo "$target"
    attempts=$(json '[s["attempts"] for s in b["stages"] if s["role"] == "target"][0]')
    http GET "/experiments/$EXP1/metrics" >/dev/null
    steps=$(json '[s["steps_run"] for s in b["stages"] if s["role"] == "target"][0]')
    from=$(in_api 'cat /artifacts/stages/target_train-*/train_result.json' |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["resumed_from_step"])')
    [ "$attempts" = 2 ] || fail "target stage attempts: $attempts (want 2)" || return 1
    [ "${from:-0}" -gt 0 ] || fail "the stage did not resume from a checkpoint" || return 1
    OUTCOME="succeeded $recovery s after the kill; target stage: attempt 2 resumed from step $from"
    OUTCOME+=" of 16 and ran $steps steps"
}

no_duplicates() {
    local rows languages outputs
    languages=$("$PY" -c "print(len($LANGUAGES))")
    rows=$(sql "SELECT (SELECT count(*) FROM experiments), (SELECT count(*) FROM stages),
        (SELECT count(DISTINCT key) FROM stages), (SELECT count(*) FROM experiment_stages),
        (SELECT count(*) FROM metrics), (SELECT count(*) FROM (SELECT DISTINCT stage_id, task,
        language, metric, seed FROM metrics) m)") || return 1
    echo "experiments stages distinct-keys links metrics distinct-metrics: $rows"
    set -- $rows
    outputs=$(in_api 'ls -d /artifacts/stages/target_train-* | wc -l')
    [ "$1" = 1 ] && [ "$2" = "$3" ] && [ "$2" = $((languages + 2)) ] && [ "$4" = "$2" ] &&
        [ "$5" = "$languages" ] && [ "$5" = "$6" ] && [ "$outputs" = 1 ] ||
        fail "rows: $rows; trained models: $outputs" || return 1
    OUTCOME="1 experiment, $2 stages ($3 keys), $4 links, $5 metric rows ($languages languages),"
    OUTCOME+=" $outputs trained model on the volume"
}

metrics_equal() {
    local code
    code=$(http GET "/experiments/$EXP1/metrics")
    [ "$code" = 200 ] || fail "GET metrics: $code" || return 1
    cp "$WORK/body" "$LOGS/metrics-compose.json"
    # The same spec outside containers: the library in .venv, SQLite, a fresh home.
    mkdir -p "$WORK/home"
    env XSTILTS_HOME="$WORK/home" XSTILTS_DATA_DIR="$DATA" XSTILTS_ENV=development \
        XSTILTS_DATABASE_URL="sqlite:///$WORK/home/xstilts.db" XSTILTS_ARTIFACTS_DIR="$WORK/home/artifacts" \
        "$REPO/.venv/bin/xstilts" run "$WORK/spec-1.json" --json "$LOGS/metrics-run.json" ||
        fail "xstilts run failed" || return 1
    OUTCOME=$("$PY" - "$LOGS/metrics-compose.json" "$LOGS/metrics-run.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
keys = lambda r: {s["role"]: s["key"] for s in r["stages"]}
same = {part: a[part] == b[part] for part in ("metrics", "summary", "warnings")}
same["stage keys"] = keys(a) == keys(b)
values = ", ".join(f'{m["language"]} {m["value"]:.4f} [{m["ci_low"]:.3f}, {m["ci_high"]:.3f}]' for m in a["metrics"])
print(("equal" if all(same.values()) else "DIFFERENT") + f": metrics, summary, warnings, stage keys ({values})")
sys.exit(0 if all(same.values()) else f"differ: {same}")
EOF
    ) || return 1
}

model_once_after() {
    local stamp
    stamp=$(in_api "stat -c '%i %Y' $MARKER") || return 1
    [ "$stamp" = "$MODEL_STAMP" ] || fail "the model folder changed: $MODEL_STAMP -> $stamp" || return 1
    ! compose logs --no-color api worker-cpu eval | grep -q "offline model: materialising" ||
        fail "a service materialised the model itself" || return 1
    OUTCOME="the same folder after the experiment (marker $stamp); no service built its own"
}

redis_restart() {
    write_spec 2 "$WORK/spec-2.json"
    local code
    code=$(http POST /experiments "$WORK/spec-2.json")
    [ "$code" = 201 ] || fail "POST: $code" || return 1
    EXP2=$(json 'b["id"]')
    local deadline=$((SECONDS + 600))
    until [ "$(http GET "/experiments/$EXP2")" = 200 ] &&
        [ "$(json '[s["status"] for s in b["stages"] if s["role"] == "target"][0]')" = running ]; do
        [ $SECONDS -lt $deadline ] || fail "the second experiment's training never started" || return 1
        sleep 1
    done
    compose restart redis || return 1
    local restarted=$SECONDS
    wait_experiment "$EXP2" 1200 || return 1
    http GET "/experiments/$EXP2" >/dev/null
    local attempts
    attempts=$(json '" ".join(s["role"] + ":" + str(s["attempts"]) for s in b["stages"])')
    http GET "/experiments/$EXP2/metrics" >/dev/null
    local n
    n=$(json 'len(b["metrics"])')
    [ "$n" = "$("$PY" -c "print(len($LANGUAGES))")" ] || fail "$n metric rows" || return 1
    http GET "/experiments/$EXP1/metrics" >/dev/null
    "$PY" -c "import json; a = json.load(open('$WORK/body')); b = json.load(open('$LOGS/metrics-compose.json')); exit(a != b)" ||
        fail "the first experiment's metrics changed" || return 1
    OUTCOME="restarted while experiment 2 trained; it succeeded $((SECONDS - restarted)) s later"
    OUTCOME+=" with all $n metrics (attempts $attempts); experiment 1 unchanged"
}

postgres_stop() {
    compose stop postgres || return 1
    # A succeeded experiment's state is cached in the API (served while the database is away);
    # the list of experiments is read from the database every time.
    local health ready code retry cached
    health=$(http GET /healthz)
    ready=$(http GET /readyz)
    cached=$(http GET "/experiments/$EXP1")
    code=$(http GET /experiments)
    retry=$(tr -d '\r' <"$WORK/headers" | awk -F': ' 'tolower($1) == "retry-after" { print $2 }')
    echo "while stopped: /healthz $health, /readyz $ready, GET /experiments $code" \
        "(Retry-After $retry), GET /experiments/$EXP1 $cached"
    compose start postgres || return 1
    local started=$SECONDS deadline=$((SECONDS + 180))
    until [ "$(http GET /experiments)" = 200 ]; do
        [ $SECONDS -lt $deadline ] || fail "no 200 within 180 s of the restart" || return 1
        sleep 1
    done
    local back=$((SECONDS - started))
    [ "$code" = 503 ] && [ -n "$retry" ] && [ "$health" = 200 ] && [ "$ready" = 503 ] ||
        fail "while stopped: healthz $health, readyz $ready, GET /experiments $code, Retry-After '$retry'" ||
        return 1
    # and the whole path works again: the same spec once more, every stage reused
    code=$(http POST /experiments "$WORK/spec-1.json")
    [ "$code" = 201 ] || fail "POST after the restart: $code" || return 1
    local again
    again=$(json 'b["id"]')
    wait_experiment "$again" 300 || return 1
    OUTCOME="stopped: GET /experiments 503 (Retry-After $retry), /readyz 503, /healthz 200, a"
    OUTCOME+=" succeeded experiment $cached (API cache); 200 again $back s after the start; a new"
    OUTCOME+=" experiment then succeeded (every stage reused)"
}

stack_down() {
    compose down -v --remove-orphans || return 1
    local left volumes
    left=$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
    volumes=$("$DOCKER" volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
    [ "$left" = 0 ] && [ "$volumes" = 0 ] || fail "$left containers, $volumes volumes left" || return 1
    OUTCOME="no container, no volume left"
}

# --- the run ------------------------------------------------------------------------------------
STACK_STARTED=""
finish() {
    if [ -n "$STACK_STARTED" ]; then
        compose logs --no-color >"$LOGS/compose.log" 2>&1
        step "down -v" stack_down
    fi
    step "stop dockerd" stop_docker
    rm -rf "$WORK"
    print_table
    if [ "$FAILURES" -gt 0 ]; then
        printf '%d step(s) failed\n' "$FAILURES"
        exit 1
    fi
}
trap finish EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || {
    echo "compose-check: needs root (it may start dockerd and run debootstrap)" >&2
    exit 2
}
[ -x "$PY" ] || bash scripts/setup.sh

step "tools" tools || exit 1
step "docker daemon" start_docker || exit 1
step "base: debian bookworm (debootstrap)" base_debian || exit 1
step "base: python (Debian's python3)" base_python || exit 1
step "base: postgres (Debian's postgresql-15)" build_local postgres:15-bookworm postgres.Dockerfile local-bases || exit 1
step "base: redis (Debian's redis-server)" build_local redis:7-bookworm redis.Dockerfile local-bases || exit 1
step "base: CPU torch wheel" torch_wheel || exit 1
step "image: api" image api || exit 1
step "image: eval (also worker-cpu, scheduler)" image eval || exit 1
skip "image: worker (CUDA)" "needs nvidia/cuda and the CUDA torch; the CPU path runs worker-cpu"
step "images: non-root, no CUDA" images_checked
step "throwaway .env" write_env || exit 1
STACK_STARTED=1
step "up -d, wait for health" stack_up || exit 1
step "network" network_checked
step "offline model prepared once" model_once_before
step "POST experiment, kill worker in training" submit_and_kill || exit 1
step "stage resumes, experiment succeeds" resumed || exit 1
step "no duplicate rows" no_duplicates
step "metrics == xstilts run outside" metrics_equal
step "offline model not rebuilt" model_once_after
step "fault: restart Redis" redis_restart
step "fault: stop Postgres" postgres_stop
