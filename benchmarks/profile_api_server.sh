#!/usr/bin/env bash
# Profile vLLM's API server process with py-spy (25 s at 200 Hz) under vllm bench serve load
# (concurrency 16, tiny Qwen3-VL, one 64x64 image, 64 tokens in/out), one variant per call:
#   benchmarks/profile_api_server.sh noparser|vlserve|vllmqwen3 PORT
# then: python benchmarks/profile_summary.py build/profile/*.raw
# Needs py-spy (pip install py-spy).
variant=$1 port=$2
cd "$(dirname "$0")/.."; mkdir -p "${PROF_DIR:-build/profile}"
case $variant in
  noparser) extra='{"reasoning": {"parser": null}}' ;;
  vllmqwen3) extra='{"reasoning": {"parser": "qwen3"}}' ;;
  vlserve) extra='{"reasoning": {"parser": "qwen3_vl"}}' ;;
esac
PYTHONPATH=. .venv/bin/python - "$extra" "$port" > ${PROF_DIR:-build/profile}/$variant.cfg.yaml <<'PY'
import json, sys, yaml
from tests.vlserver import tiny_config
cfg = tiny_config(**json.loads(sys.argv[1])); cfg["server"]={"host":"127.0.0.1","port":int(sys.argv[2])}
print(yaml.safe_dump(cfg))
PY
TOK=$(.venv/bin/vl-serve build-model tiny-qwen3-vl | tail -1)
setsid .venv/bin/vl-serve --config ${PROF_DIR:-build/profile}/$variant.cfg.yaml > ${PROF_DIR:-build/profile}/$variant.log 2>&1 &
spid=$!
for i in $(seq 1 200); do sleep 1; curl -sf 127.0.0.1:$port/health >/dev/null && break; done
B="vllm bench serve --backend openai-chat --endpoint /v1/chat/completions --base-url http://127.0.0.1:$port --model tiny-qwen3-vl --tokenizer $TOK --dataset-name random-mm --max-concurrency 16 --random-input-len 64 --random-output-len 64 --random-range-ratio 0 --random-mm-base-items-per-request 1 --random-mm-num-mm-items-range-ratio 0 --random-mm-limit-mm-per-prompt {\"image\":1,\"video\":0} --random-mm-bucket-config {(64,64,1):1.0} --ignore-eos --temperature 0 --disable-tqdm"
.venv/bin/$B --num-prompts 48 > /dev/null 2>&1   # warm-up
(.venv/bin/$B --num-prompts 400 > ${PROF_DIR:-build/profile}/$variant.bench.txt 2>&1 &)
sleep 8
.venv/bin/py-spy record -p $spid -d 25 -r 200 -f raw -o ${PROF_DIR:-build/profile}/$variant.raw > ${PROF_DIR:-build/profile}/$variant.pyspy.txt 2>&1
while pgrep -f "num-prompts 400" >/dev/null; do sleep 2; done
kill -TERM -- -$spid 2>/dev/null; sleep 5; kill -KILL -- -$spid 2>/dev/null
grep -E "Request throughput|Median TPOT|Median TTFT" ${PROF_DIR:-build/profile}/$variant.bench.txt
