#!/usr/bin/env bash
# White-box evasion benchmark on one CUDA GPU (H100 / H200), for the lead to run.
#
# The machine has torch with CUDA but no network and no .venv: this runs from the source tree
# (PYTHONPATH=src), in order:
#   1. the CUDA tests (pytest -m gpu tests/attacks/evasion/test_cuda.py);
#   2. benchmarks/bench_graphs.py on the MLP: CUDA graphs on and off for early exit off / on
#      and for several chunks (one capture for chunks of equal size), PGD and APGD;
#   3. benchmarks/bench_evasion.py on the digits MLP at two batch sizes and on the digits CNN,
#      each with the opt-in bf16 (+ channels-last for the CNN) mode, against torchattacks when
#      it is installed (ART, when missing, is skipped);
#   4. bench_graphs.py on the CNN;
#   5. benchmarks/trace_gpu_pgd.py: a whole PGD run's wall time phase by phase, at the
#      GPU-bound sizes (MLP 32,768 points, CNN 8,192);
#   6. benchmarks/profile_gpu_step.py: kernels and GPU busy time per step against wall time,
#      for the floor and Bastion's PGD at the GPU-bound sizes (MLP 32,768 points, CNN 8,192).
# The parts run most important first (the tests, then the measurements of the newest code)
# and share one deadline, TOTAL_S seconds (default 540, under a device call's 600 s limit):
# a part that no longer fits is cut short or skipped, saying so, so one call always brings
# the report back. About 3 minutes on an H200 (2026-11-26); the output goes to
# $OUT/gpu_evasion.txt.
#
# Usage: bash benchmarks/gpu_evasion.sh   (PYTHON=python3 picks the interpreter; WHEELS=dir
#        holds wheels of missing packages such as pydantic, for a machine without a network;
#        TOTAL_S=seconds sets the deadline; STRENGTH_SEEDS=N the untimed strength runs, default 10)
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

TOTAL_S="${TOTAL_S:-540}"
STARTED=$SECONDS
step() {  # step SECONDS TITLE COMMAND...: one part, cut off after SECONDS or at the deadline
  local limit="$1" title="$2"
  shift 2
  local left=$((TOTAL_S - (SECONDS - STARTED)))
  echo
  echo "== $title"
  if [ "$left" -lt 20 ]; then
    echo "(skipped: ${left} s left of TOTAL_S=${TOTAL_S})"
    return
  fi
  [ "$limit" -le "$left" ] || limit="$left"
  timeout "$limit" "$@" 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] || echo "(exit status $rc)"
}

bench() {
  step 90 "bench_evasion.py $*" "$PY" benchmarks/bench_evasion.py --device cuda --bf16 \
    --duel-rounds 4 --strength-seeds "${STRENGTH_SEEDS:-10}" "$@"
}

{
  step 180 "CUDA tests" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/attacks/evasion/test_cuda.py
  step 120 "bench_graphs.py: mlp" "$PY" benchmarks/bench_graphs.py --model mlp
  bench --model mlp --points 4096 --exit-eps 0.25
  bench --model mlp --points 32768 --exit-eps 0
  bench --model cnn --points 8192 --exit-eps 0
  step 120 "bench_graphs.py: cnn" "$PY" benchmarks/bench_graphs.py --model cnn
  step 60 "phases: mlp" "$PY" benchmarks/trace_gpu_pgd.py --model mlp --points 32768
  step 60 "phases: cnn" "$PY" benchmarks/trace_gpu_pgd.py --model cnn --points 8192
  step 60 "profile: mlp" "$PY" benchmarks/profile_gpu_step.py --model mlp --points 32768
  step 60 "profile: cnn" "$PY" benchmarks/profile_gpu_step.py --model cnn --points 8192
} | tee -a "$REPORT"
echo "wrote $REPORT"
