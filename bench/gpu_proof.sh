#!/bin/bash
# Issue 21's GPU measurements as one prepared script, in parts that each fit one device call.
# Prepare on this machine (builds the git-ignored .gpu/: wheels, data, tokenizer):
#     ../shared/gpu/prepare.sh
# then, through the device tool:  command "bash bench/gpu_proof.sh train", carry [".gpu"]
#
#   train     our loop (plain, width buckets, CUDA graphs) against HF Trainer, batch 32 and 128
#   compile   training.torch_compile (static per width): time to the first step, then its speed
#   stages    6 target stages one after another, then 6 at once on the GPU (stages per GPU)
#   predict   all 15 XNLI languages' validation sets (37,350 examples) through the predict path
#   smoke     every part on a tiny model, a few steps (on a CPU too: checks the script itself)
#
# Environment: SIZE=large|tiny (default large), STEPS (default 60), ROUNDS (default 2), OUT (the
# folder whose files come back; default /tmp/gpuout). Each part logs its elapsed seconds.
set -u
part=${1:-train}
G=$PWD/.gpu; SIZE=${SIZE:-large}; STEPS=${STEPS:-60}; ROUNDS=${ROUNDS:-2}; OUT=${OUT:-/tmp/gpuout}
if [ "$part" = smoke ]; then SIZE=tiny; STEPS=4; ROUNDS=1; fi
WARM=$((STEPS / 6 > 0 ? STEPS / 6 : 1))
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
t0=$SECONDS; log() { echo "== [$((SECONDS - t0)) s] $*" | tee -a "$OUT/log.txt"; }
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

train() {
  for bs in 32 128; do
    log "train, batch $bs"
    python3 bench/gpu_train.py --model "$M" --batch-size $bs --steps "$STEPS" --warmup "$WARM" \
      --rounds "$ROUNDS" --configs xstilts xstilts-widths xstilts-graphs trainer-group-by-length \
      trainer-random 2>&1 | tee -a "$OUT/train-$bs.txt" | tail -9
  done
}
compile() {
  log "compile: time to the first step (target: 90 s), then speed against eager"
  timeout 300 python3 bench/gpu_train.py --model "$M" --batch-size 32 --steps "$STEPS" \
    --warmup "$WARM" --rounds 1 --configs xstilts xstilts-compile 2>&1 | tee -a "$OUT/compile.txt" | tail -6
  echo "compile exit: ${PIPESTATUS[0]} (124: past the 300 s limit)" | tee -a "$OUT/compile.txt"
}
stages() {
  log "stages per GPU: 6 one after another, then 6 at once (target: at most a fifth of the time)"
  python3 bench/concurrent_stages.py --model "$M" --stages 6 --steps "$STEPS" 2>&1 \
    | tee -a "$OUT/stages.txt" | tail -8
}
predict() {
  log "predict: XNLI validation, 15 languages"
  python3 bench/inference_throughput.py --model "$M" --per-language 2490 --batch-size 256 \
    --rounds 1 2>&1 | tee -a "$OUT/predict.txt" | tail -7
}
case "$part" in
  train|compile|stages|predict) "$part" ;;
  smoke) train; compile; stages; predict ;;
  *) echo "usage: bash bench/gpu_proof.sh train|compile|stages|predict|smoke" >&2; exit 2 ;;
esac
log "done: $part"
