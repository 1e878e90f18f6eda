#!/usr/bin/env bash
# White-box evasion benchmark on one CUDA GPU (H100 / H200), for the lead to run.
#
# The machine has torch with CUDA but no network and no .venv: this runs from the source tree
# (PYTHONPATH=src), in order:
#   1. the CUDA tests (pytest -m gpu tests/attacks/evasion/test_cuda.py tests/test_user_code.py);
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
#        TOTAL_S=seconds sets the deadline; STRENGTH_SEEDS=N the untimed strength runs, default 10;
#        DUEL_ROUNDS=N the back-to-back pairs, default 4; PARTS="tests phases-mlp ..." runs only
#        the parts named: tests graphs-mlp bench-4096 bench-32768 bench-cnn bench-100-steps
#        graphs-cnn phases-mlp phases-cnn profile-mlp profile-cnn; bench-100-steps only when
#        named)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python || command -v python3)}"
OUT_DIR="${OUT:-.}"
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/gpu_evasion.txt"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

# bastion needs pydantic (and numpy, pandas, scikit-learn, scipy, PyYAML). Without a network,
# missing packages can come in a folder of wheels, WHEELS=path/to/wheels (default .whl),
# installed to a temporary site when pydantic is missing. The folder may hold compiled wheels
# for several Pythons (the device's version is not known in advance): only the pure-Python
# ones and those tagged for this interpreter are installed. The site goes last on the path,
# so the machine's own packages win.
WHEELS="${WHEELS:-.whl}"
if ! "$PY" -c "import pydantic" 2>/dev/null && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  SITE="$(mktemp -d)"
  TAG="$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
  mapfile -t FITTING < <(ls "$WHEELS"/*.whl | grep -E -- "-(py3-none|${TAG}-${TAG})-")
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    "${FITTING[@]}" && export PYTHONPATH="$PYTHONPATH:$SITE"
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
    --duel-rounds "${DUEL_ROUNDS:-4}" --strength-seeds "${STRENGTH_SEEDS:-10}" "$@"
}

# PARTS="tests bench-32768 phases-mlp ..." runs only the parts named (default: all, in order)
PARTS="${PARTS:-tests graphs-mlp bench-4096 bench-32768 bench-cnn graphs-cnn phases-mlp phases-cnn profile-mlp profile-cnn}"
want() { [[ " $PARTS " == *" $1 "* ]]; }

{
  want tests && step 180 "CUDA tests" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
    tests/attacks/evasion/test_cuda.py tests/test_user_code.py
  want graphs-mlp && step 120 "bench_graphs.py: mlp" "$PY" benchmarks/bench_graphs.py --model mlp
  want bench-4096 && bench --model mlp --points 4096 --exit-eps 0.25
  want bench-32768 && bench --model mlp --points 32768 --exit-eps 0
  want bench-cnn && bench --model cnn --points 8192 --exit-eps 0
  # the fixed costs (transfers, capture, clean predictions, verification) over more steps
  want bench-100-steps && bench --model mlp --points 32768 --exit-eps 0 --steps 100 --no-peers
  want graphs-cnn && step 120 "bench_graphs.py: cnn" "$PY" benchmarks/bench_graphs.py --model cnn
  # phases, where one run waits for the device, and the host's calls
  want phases-mlp && step 60 "phases: mlp" "$PY" benchmarks/trace_gpu_pgd.py --model mlp \
    --points 32768 --syncs --host-profile 25 --round-robin
  want phases-cnn && step 60 "phases: cnn" "$PY" benchmarks/trace_gpu_pgd.py --model cnn \
    --points 8192 --syncs
  want profile-mlp && step 60 "profile: mlp" "$PY" benchmarks/profile_gpu_step.py --model mlp \
    --points 32768
  want profile-cnn && step 60 "profile: cnn" "$PY" benchmarks/profile_gpu_step.py --model cnn \
    --points 8192
} | tee -a "$REPORT"
echo "wrote $REPORT"
