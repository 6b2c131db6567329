#!/usr/bin/env bash
# The GPU benchmark of issue 16, at most 8 minutes on one GPU; writes the GPU section of benchmarks/RESULTS.md.
#
#   benchmarks/gpu.sh            # on a machine with a CUDA GPU, from anywhere in the repository
#   benchmarks/gpu.sh --smoke    # the same steps on the CPU at tiny sizes (tests/test_benchmarks.py runs it)
#   benchmarks/gpu.sh --out FILE # write FILE instead of benchmarks/RESULTS.md
#
# What it runs (paper sizes: GTA5 1280×720 + Cityscapes 1024×512, batch 1 + 1, synthetic batches, no dataset):
#   1. udabench bench: MinEnt and AdvEnt steps in fp32 and bf16, and the evaluation of 500 synthetic images at
#      1024×512 with 2048×1024 labels in each;
#   2. the same in bf16 + channels_last;
#   3. benchmarks/overhead.py: udabench vs a bare PyTorch loop (MinEnt, bf16 + channels_last);
#   4. bf16 + channels_last + torch.compile, with the time left (compilation takes minutes);
#   5. benchmarks/data_wait.py at paper sizes, if a minute is left.
# The backbone is deeplab_resnet101 when `udabench list backbones` shows it, else timm's resnet101.
# Every step has its own time limit inside the 8-minute budget; a step that fails or runs out of time is
# listed as "not measured" in the results, never dropped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
OUT=benchmarks/RESULTS.md
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: benchmarks/gpu.sh [--smoke] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-python}
BUDGET=470            # seconds for all steps (8 minutes less the time to write the results)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  BACKBONE=resnet10t
  TITLE="GPU script smoke run (CPU, tiny sizes: not a GPU measurement)"
  SIZES=(--set data.source.size=[64,32] --set data.target.size=[64,32] --set data.eval.size=[64,32]
         --set data.eval_batch_size=2)
  BENCH=(--iterations 1 --warmup 1 --eval-images 2 --eval-label-size 128x64 --floor-size 128 --threads 1)
  OVERHEAD=(--steps 1 --rounds 1 --check 1 --threads 1)
  DATA_WAIT=(--smoke --steps 3 --workers 0)
else
  if ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "benchmarks/gpu.sh: no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine, or" \
         "pass --smoke for the CPU check of the script." >&2
    exit 2
  fi
  DEVICE=cuda
  BACKBONE=$($PY -m udabench list backbones | awk '$1 == "deeplab_resnet101" {print $1}')
  BACKBONE=${BACKBONE:-resnet101}
  TITLE="GPU"
  SIZES=()
  BENCH=(--iterations 20 --warmup 5 --eval-images 500 --eval-label-size 2048x1024)
  OVERHEAD=(--steps 10 --rounds 3)
  DATA_WAIT=(--images 8 --steps 12 --workers 0,4)
fi
COMMON=(suites/gta5_cityscapes.yaml --methods minent,advent --data synthetic --device "$DEVICE"
        --set "model.backbone=$BACKBONE" "${SIZES[@]}" --json)
echo "benchmarks/gpu.sh: backbone $BACKBONE on $DEVICE; results in $OUT" >&2

# step NAME SECONDS COMMAND...: run COMMAND with a time limit (at most what is left of the budget),
# its stdout to NAME.json; on failure the last lines of its stderr go to NAME.failed.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  if [ "$limit" -lt 20 ]; then
    echo "skipped: not enough of the 8-minute budget left" > "$TMP/$name.failed"
    return 0
  fi
  echo "[$SECONDS s] $name (limit ${limit} s)" >&2
  local code=0
  timeout "$limit" "$@" > "$TMP/$name.json" 2> "$TMP/$name.err" || code=$?
  if [ "$code" = 0 ]; then
    return 0
  fi
  rm -f "$TMP/$name.json"
  { tail -n 3 "$TMP/$name.err"; [ "$code" = 124 ] && echo "timed out after ${limit} s"; } > "$TMP/$name.failed" || true
  echo "  $name: not measured ($(tail -n 1 "$TMP/$name.failed"))" >&2
}

step 1-fp32-bf16 200 $PY -m udabench bench "${COMMON[@]}" --precision fp32,bf16 "${BENCH[@]}"
step 2-bf16-channels-last 100 $PY -m udabench bench "${COMMON[@]}" --precision bf16 --channels-last "${BENCH[@]}"
step 3-overhead 60 $PY benchmarks/overhead.py suites/gta5_cityscapes.yaml --device "$DEVICE" \
  --set "model.backbone=$BACKBONE" "${SIZES[@]}" --precision bf16 --channels-last "${OVERHEAD[@]}" --json
if [ "$SMOKE" = 1 ]; then
  echo "skipped in --smoke: compilation takes minutes on a CPU" > "$TMP/4-compile.failed"
else
  step 4-compile $((BUDGET - 60 - SECONDS)) $PY -m udabench bench "${COMMON[@]}" --precision bf16 --channels-last \
    --compile "${BENCH[@]}"
fi
step 5-data-wait 60 $PY benchmarks/data_wait.py "${DATA_WAIT[@]}" --json

$PY benchmarks/write_results.py "$TMP" --out "$OUT" --title "$TITLE"
