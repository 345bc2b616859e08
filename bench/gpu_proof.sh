#!/bin/bash
# Issue 21's GPU measurements as one prepared script. Prepare on this machine (builds the
# git-ignored .gpu/: wheels, data, tokenizer):
#     ../shared/gpu/prepare.sh
# then, through the device tool:  command "bash bench/gpu_proof.sh all", carry [".gpu"]
#
#   all       every measurement below, most important first, inside DEADLINE seconds (default
#             480): an item that no longer fits is skipped and said so. What finished is noted on
#             the machine (/tmp/gpuproof-done), so the same command again on the still-warm machine
#             goes on with what is left (the model it built is kept too).
#   train32   our loop against HF Trainer length-grouped, batch 32, STEPS steps, ROUNDS rounds
#   train128  the same at batch 128, STEPS/2 steps
#   random    HF Trainer in random order, batch 32 and 128 (the third row)
#   train     train32, train128 and random
#   graphs    our loop with width buckets and with CUDA graphs, batch 32 (first step, slowest step)
#   compile   training.torch_compile (static per width): time to the first step, then its speed
#             (60 steps, cut at 240 s)
#   stages    6 target stages of STEPS/2 steps one after another, then 6 at once on the GPU
#   predict   all 15 XNLI languages' validation sets (37,350 examples) through the predict path
#   smoke     `all` on a tiny model with a few steps and no deadline (on a CPU too: checks the script)
#
# Environment: SIZE=large|tiny (default large), STEPS (timed-run steps at batch 32, default 150;
# a sixth of them warm-up), CSTEPS (compile's steps, default 60), ROUNDS (default 2), DEADLINE
# (all: seconds, default 480), OUT (the folder whose files come back; default /tmp/gpuout). Each
# item logs its elapsed seconds to $OUT/log.txt and its table to $OUT/<item>.txt as it goes (8
# files at most: what the device tool returns), so a run cut short still returns them.
set -u
part=${1:-all}
G=$PWD/.gpu; SIZE=${SIZE:-large}; STEPS=${STEPS:-150}; ROUNDS=${ROUNDS:-2}; OUT=${OUT:-/tmp/gpuout}
DEADLINE=${DEADLINE:-480}; DONE=${DONE:-/tmp/gpuproof-done}
CSTEPS=${CSTEPS:-60}
if [ "$part" = smoke ]; then SIZE=tiny; STEPS=6; CSTEPS=6; ROUNDS=1; DEADLINE=100000; DONE=$(mktemp); fi
WARM=$((STEPS / 6 > 0 ? STEPS / 6 : 1))
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
T0=$(date +%s); log() { echo "== [$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/log.txt"; }
[ -d "$G" ] || { echo "no .gpu/: run ../shared/gpu/prepare.sh first and carry .gpu" >&2; exit 2; }
if ! python3 -c "import pydantic_settings, sqlalchemy" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$G"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/shared
export XSTILTS_DATA_DIR=$G/data XSTILTS_HOME=/tmp/xh XSTILTS_CACHE_DIR=/tmp/xc XSTILTS_MODEL_ROOTS=/tmp/models
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee -a "$OUT/log.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/log.txt"
M=/tmp/models/xlmr-$SIZE
[ -f "$M/config.json" ] || { log "model ($SIZE)"; python3 "$G"/make_model.py "$M" "$SIZE" 2>&1 | tail -1; }

# gpu_train.py at one batch size: gpu_train FILE BATCH STEPS ROUNDS CONFIG...
gpu_train() {
  local file=$1 bs=$2 steps=$3 rounds=$4; shift 4
  python3 bench/gpu_train.py --model "$M" --batch-size "$bs" --steps "$steps" \
    --warmup $((steps / 6 > 0 ? steps / 6 : 1)) --rounds "$rounds" --configs "$@" 2>&1 \
    | tee -a "$OUT/$file.txt" | tail -9
  return "${PIPESTATUS[0]}"
}
train32() {
  log "train, batch 32: our loop against HF Trainer length-grouped (target: at least x2)"
  gpu_train train-32 32 "$STEPS" "$ROUNDS" xstilts trainer-group-by-length
}
train128() {
  log "train, batch 128: our loop against HF Trainer length-grouped (target: at least x1.3)"
  gpu_train train-128 128 $((STEPS / 2)) "$ROUNDS" xstilts trainer-group-by-length
}
random() {
  log "train, batch 32 and 128: HF Trainer in random order"
  gpu_train random 32 "$STEPS" 1 trainer-random && gpu_train random 128 $((STEPS / 2)) 1 trainer-random
}
train() { train32 && train128 && random; }
graphs() {
  log "width buckets and CUDA graphs, batch 32 (first step and slowest step show compilation)"
  gpu_train graphs 32 "$STEPS" 1 xstilts xstilts-widths xstilts-graphs
}
compile() {
  log "compile: time to the first step (target: 90 s), then speed against eager"
  timeout 240 python3 bench/gpu_train.py --model "$M" --batch-size 32 --steps "$CSTEPS" \
    --warmup $((CSTEPS / 6)) --rounds 1 --configs xstilts xstilts-compile 2>&1 | tee -a "$OUT/compile.txt" | tail -6
  local rc=${PIPESTATUS[0]}
  echo "compile exit: $rc (124: past the 240 s limit)" | tee -a "$OUT/compile.txt"
  return "$rc"
}
stages() {
  log "stages per GPU: 6 one after another, then 6 at once (target: at most a fifth of the time)"
  python3 bench/concurrent_stages.py --model "$M" --stages 6 --steps $((STEPS / 2)) 2>&1 \
    | tee -a "$OUT/stages.txt" | tail -8
  return "${PIPESTATUS[0]}"
}
predict() {
  log "predict: XNLI validation, 15 languages"
  python3 bench/inference_throughput.py --model "$M" --per-language 2490 --batch-size 256 \
    --rounds 1 2>&1 | tee -a "$OUT/predict.txt" | tail -7
  return "${PIPESTATUS[0]}"
}
# all: each item with the seconds it is expected to need on an H200 (XLM-R Large), most important
# first; an item runs only if that much is left before DEADLINE, under a timeout at the deadline.
all() {
  local item need left rc
  for item in train32:140 train128:140 stages:150 predict:60 compile:200 graphs:200 random:80; do
    need=${item#*:}; item=${item%:*}
    if grep -qx "$item" "$DONE" 2>/dev/null; then log "$item: done in an earlier call"; continue; fi
    left=$((DEADLINE - ($(date +%s) - T0)))
    if [ "$left" -lt "$need" ]; then
      log "$item: skipped, needs about $need s and $left s are left (run 'all' again)"; continue
    fi
    ( export -f log gpu_train train32 train128 random graphs compile stages predict
      export M STEPS CSTEPS ROUNDS WARM OUT T0
      timeout "$left" bash -c "$item" ); rc=$?
    if [ "$rc" = 0 ]; then echo "$item" >> "$DONE"; else log "$item: exit $rc (124: cut at the deadline)"; fi
  done
}
case "$part" in
  all|smoke) all ;;
  train|train32|train128|random|graphs|compile|stages|predict) "$part" ;;
  *) echo "usage: bash bench/gpu_proof.sh all|train|train32|train128|random|graphs|compile|stages|predict|smoke" >&2
     exit 2 ;;
esac
log "done: $part"
