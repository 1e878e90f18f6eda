#!/usr/bin/env bash
# White-box evasion benchmark on one CUDA GPU (H100 / H200), for the lead to run.
#
# The machine has torch with CUDA but no network and no .venv: this runs
# benchmarks/bench_evasion.py from the source tree (PYTHONPATH=src) without the peers
# (--no-peers: torch, numpy, scikit-learn and bastion only), on the digits MLP at two batch
# sizes and on the digits CNN, each with the opt-in bf16 (+ channels-last for the CNN) mode.
# Finishes in well under 4 minutes; the tables go to $OUT/gpu_evasion.txt (default: ./).
#
# Usage: bash benchmarks/gpu_evasion.sh   (PYTHON=python3 picks the interpreter; WHEELS=dir
#        holds wheels of missing packages such as pydantic, for a machine without a network)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python || command -v python3)}"
OUT_DIR="${OUT:-.}"
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/gpu_evasion.txt"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

# bastion needs pydantic (and numpy, pandas, scikit-learn, scipy, PyYAML). Without a network,
# missing pure-Python packages and wheels built for this Python can come in a folder of
# wheels: WHEELS=path/to/wheels (default .whl) is installed to a temporary site when pydantic
# is missing.
WHEELS="${WHEELS:-.whl}"
if ! "$PY" -c "import pydantic" 2>/dev/null && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  SITE="$(mktemp -d)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    "$WHEELS"/*.whl && export PYTHONPATH="$PYTHONPATH:$SITE"
fi

{
  echo "== environment"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PY" - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
missing = []
for name in ("torch", "numpy", "sklearn", "pandas", "pydantic", "scipy", "yaml"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except ImportError:
        missing.append(name)
if missing:
    print("MISSING:", ", ".join(missing), "(bastion needs them; the benchmark cannot run)")
import torch
print("cuda available:", torch.cuda.is_available())
PY
} 2>&1 | tee "$REPORT"

run() {
  echo
  echo "== bench_evasion.py $*"
  timeout 70 "$PY" benchmarks/bench_evasion.py --device cuda --no-peers --bf16 "$@" 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] || echo "(exit status $rc)"
}

{
  run --model mlp --points 4096 --exit-eps 0.25
  run --model mlp --points 32768 --exit-eps 0
  run --model cnn --points 8192 --exit-eps 0
} | tee -a "$REPORT"
echo "wrote $REPORT"
