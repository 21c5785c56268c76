#!/usr/bin/env bash
# Our GEMM kernels vs ONNX Runtime on the same shapes, one thread, side by side.
#
#   scripts/bench_vs_ort.sh                      # every dtype this build has that ORT can be compared with
#   SHAPES=256x1024x1024,1x768x768 scripts/bench_vs_ort.sh
#   DTYPES=int8,f32 OUT=/tmp/cmp scripts/bench_vs_ort.sh
#
# Builds the harness in release, measures the clock once (both sides use it for the peak columns), runs
# `harness bench --isa auto` (the dispatched kernels) and scripts/peer_ort.py, writes both CSVs to $OUT and
# prints a markdown table with ours / ORT per shape and dtype. Needs `pip install onnxruntime onnx numpy`.
# Measure on a quiet machine: check `uptime` first.
set -euo pipefail
cd "$(dirname "$0")/.."

SHAPES=${SHAPES:-1x768x768,16x768x3072,128x768x768,256x1024x1024,1024x1024x1024,3136x576x64}
OUT=${OUT:-results/bench}
REPEATS=${REPEATS:-10}
MIN_TIME_MS=${MIN_TIME_MS:-500}

cargo build --release -p harness >&2
H=${CARGO_TARGET_DIR:-target}/release/harness
mkdir -p "$OUT"

# Our dtypes that have a peer path (bf16 and f16 are compared with ORT's FP32 MatMul).
built=$("$H" bench --list | awk 'NR > 2 && $2 != "(none" { print $1 }' | sort -u)
if [[ -z "${DTYPES:-}" ]]; then
    DTYPES=""
    for d in int8 dynint8 int4 int4f32 f32 bf16 f16; do
        if grep -qx "$d" <<<"$built"; then DTYPES+="${DTYPES:+,}$d"; fi
    done
fi
peer_dtypes=""
for d in ${DTYPES//,/ }; do
    case $d in bf16 | f16 | f32w8) p=f32 ;; *) p=$d ;; esac
    if [[ ",$peer_dtypes," != *",$p,"* ]]; then peer_dtypes+="${peer_dtypes:+,}$p"; fi
done

clock=$("$H" bench --print-clock)
echo "load: $(uptime | sed 's/.*load average: //'); clock: $clock GHz; ours: $DTYPES; ORT: $peer_dtypes" >&2

"$H" bench --op gemm --dtype "$DTYPES" --isa auto --shapes "$SHAPES" --threads 1 \
    --repeats "$REPEATS" --min-time-ms "$MIN_TIME_MS" --clock-ghz "$clock" > "$OUT/ours.csv"
python3 scripts/peer_ort.py --dtype "$peer_dtypes" --shapes "$SHAPES" --clock-ghz "$clock" \
    --repeats "$REPEATS" --min-time-ms "$MIN_TIME_MS" > "$OUT/ort.csv"

echo "ours: $OUT/ours.csv, ORT: $OUT/ort.csv" >&2
python3 scripts/peer_ort.py --compare "$OUT/ours.csv" "$OUT/ort.csv"
