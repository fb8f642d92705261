#!/usr/bin/env bash
# The GPU benchmark, in one call on a lent GPU machine (benchmarks/gpu/README.md): install vLLM
# 0.26.0 from the staged wheels and vl-serve from its wheel, build the Qwen3-VL-4B-shaped
# dummy-weight model folder, run bench.py (bare vLLM against vl-serve, one cohort: both servers
# up together on the one GPU for every repetition), then the transformers baseline with the time
# left.
#
# usage, from the repository root on the device machine, after every .gpu/cNN folder was copied
# into /tmp/stage:   bash benchmarks/gpu/run-on-device.sh OUTDIR [SECONDS]
# Writes OUTDIR/latest.json (bench.py's result), transformers.json, bench.log, install.log and
# logs.tar.gz (the servers' logs); SECONDS (default 580) bounds the whole script.
set -uo pipefail
out=${1:?usage: run-on-device.sh OUTDIR [SECONDS]}
budget=${2:-580}
mkdir -p "$out"
left() { echo $((budget - SECONDS)); }

echo "== install ($(date -u +%T))"
if ! bash .gpu/install-on-device.sh >"$out/install.log" 2>&1; then
  tail -30 "$out/install.log"
  exit 1
fi
tail -1 "$out/install.log"
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/vlw/*.whl >>"$out/install.log" 2>&1 || { echo "vl-serve wheel failed"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

echo "== model folder ($(date -u +%T))"
export VL_SERVE_BENCH_MODEL=/tmp/vl-serve-bench/qwen3-vl-4b-dummy
python3 benchmarks/gpu/make_model.py "$VL_SERVE_BENCH_MODEL" 2>&1 | grep -v "incorrect regex" || exit 1

echo "== bench.py ($(date -u +%T), $(left) s left)"
# 80 s kept back for the transformers baseline and the copying.
PYTHONUNBUFFERED=1 python3 benchmarks/bench.py \
  --config benchmarks/gpu/qwen3-vl-4b-dummy.yaml --variants vllm,vl-serve \
  --cpu-layout none --reps 6 --cohort-reps 6 --concurrency 1,16,64 \
  --prompts 1:12,16:128,64:256 --warmup-prompts 256 \
  --image-size 448 --input-len 128 --output-len 128 --transformers-requests 0 \
  --start-timeout $(($(left) - 130)) --time-budget $(($(left) - 80)) \
  --out "$out" --keep-workdir 2>&1 | grep -v "incorrect regex" | tee "$out/bench.log"
rm -f "$out/latest.png"  # plotted on the developer's machine (matplotlib may be missing here)
work=$(ls -dt /tmp/vl-serve-bench-* 2>/dev/null | head -1)
[ -n "$work" ] && tar czf "$out/logs.tar.gz" -C "$work" --exclude='*.json' . 2>/dev/null

echo "== transformers baseline ($(date -u +%T), $(left) s left)"
if [ "$(left)" -gt 40 ]; then
  timeout $(($(left) - 10)) python3 benchmarks/transformers_baseline.py \
    --model "$VL_SERVE_BENCH_MODEL" --dummy-weights --device cuda --requests 3 \
    --image-size 448 --input-len 128 --output-len 128 \
    --json-out "$out/transformers.json" 2>&1 | grep -v "incorrect regex" | tail -25
fi
if [ -f "$out/transformers.json" ] && [ -f "$out/latest.json" ]; then
  python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import bench_report, bench_stats
out = Path(sys.argv[1])
result = json.loads((out / "latest.json").read_text())
tf = json.loads((out / "transformers.json").read_text())
result["transformers_baseline"] = tf
result["transformers_ratio"] = bench_stats.transformers_ratio(result["summary"], tf)
result["notes"].append("transformers baseline: run after the servers stopped (run-on-device.sh)")
(out / "latest.json").write_text(bench_report.dumps(result))
PY
fi
echo "== done ($(date -u +%T), $SECONDS s)"
