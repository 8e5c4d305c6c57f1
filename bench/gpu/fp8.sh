#!/usr/bin/env bash
# The fp8 KV cache on one GPU (issue #19; docs/notes/kv-fp8-plan.md), in one call (`bash bench/gpu/fp8.sh` from the
# repository root; binaries as for gemv.sh: .gpu/apb.xz and .gpu/Apb.Gpu.Tests.xz, unpacked here):
#   1. ptxas -v of decode.cu and elementwise.cu (registers and spills: the bf16 decode kernels must keep theirs)
#   2. the GPU tests of $FILTER (default: fp8kv/ (the fp8 kernels and a fixture session), decode/ (the bf16 decode,
#      whose kernel the fp8 one shares), ops/rope (the bf16 append beside the fp8 one))
#   3. apb bench kernel decode at 16K, 64K and 128K: the bf16 split-KV rows and split-kv-fp8, same call
#   4. apb bench decode --kv-cache-dtype auto,fp8 at $CONTEXTS (default 8k,128k): ms/token of a Llama-3.1-8B step
#      with either cache, same call (#19's bar: 7 ms at 128K with fp8)
#   5. apb eval ruler at $LENGTH (default 16k), $SAMPLES per task (default 20), all tasks, full and apb on $RANKS
#      in-process ranks (default 4), once with the bf16 cache and once with fp8, the same seed (the same samples;
#      #19's bar: fp8 within 0.5 points of bf16 for full and for APB)
# SKIP (space-separated) leaves out steps: ptxas, tests, kernel, decode, ruler.
# Everything lands in $OUT/fp8.tar.gz with a summary in $OUT/summary.md (printed last).
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-fp8}
MODEL=${MODEL:-models/embedded}
CONTEXTS=${CONTEXTS:-8k,128k}
LENGTH=${LENGTH:-16k}
SAMPLES=${SAMPLES:-20}
RANKS=${RANKS:-4}
SKIP=${SKIP:-}
begin_run apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests

skip ptxas || for f in decode.cu elementwise.cu; do ptxas_summary "src/Apb.Core/Backends/Cuda/Kernels/$f" "decode2|fp8"; cp "$WORK/ptxas.txt" "$WORK/ptxas-$f.txt" 2>/dev/null; done
skip tests || gpu_tests_summary "${FILTER:-fp8kv/,decode/,ops/rope}"

if ! skip kernel; then
  step "bench kernel decode 16k,64k,128k"
  timeout 300 "$APB" bench kernel decode --lengths 16k,64k,128k --out "$WORK/kernel-decode.json" > "$WORK/kernel-decode.md" 2> "$WORK/kernel-decode.log"
  summarize $? kernel-decode "bench kernel decode (bf16 rows and split-kv-fp8, same call)"
fi

if ! skip decode; then
  step "bench decode auto,fp8 at $CONTEXTS"
  timeout 400 "$APB" bench decode --device cuda --shape llama-3.1-8b --contexts "$CONTEXTS" --kv-cache-dtype auto,fp8 --out "$WORK/decode" > "$WORK/decode.md" 2> "$WORK/decode.log"
  summarize $? decode "bench decode, Llama-3.1-8B shape, bf16 and fp8 caches (same call)"
fi

if ! skip ruler; then
  require_model
  for kv in auto fp8; do
    name=ruler-$kv
    step "eval ruler full,apb x$RANKS $LENGTH, --kv-cache-dtype $kv"
    timeout 300 "$APB" eval ruler --model "$MODEL" --device cuda --tasks all --length "$LENGTH" --samples "$SAMPLES" \
      --ranks "$RANKS" --strategies full,apb --kv-cache-dtype "$kv" --json "$WORK/$name.json" > "$WORK/$name.md" 2> "$WORK/$name.log"
    summarize $? "$name" "RULER, $LENGTH, $SAMPLES samples per task, KV cache $kv"
  done
fi

tar -czf "$OUT/fp8.tar.gz" -C "$WORK" .
step "done"
cat "$SUMMARY"
