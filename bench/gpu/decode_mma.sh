#!/usr/bin/env bash
# Version 3 of the split-KV decode, on tensor cores (decode_mma.cu; docs/kernels/decode-mma.md; issue #19), on one GPU
# (`bash bench/gpu/decode_mma.sh` from the repository root; binaries as for fp8.sh: .gpu/apb.xz and
# .gpu/Apb.Gpu.Tests.xz, unpacked here):
#   1. ptxas -v of decode_mma.cu (registers and spills per kernel)
#   2. the GPU tests of $FILTER (default: decode/v3 (version 3 over the decode grid, bf16), fp8kv/decode (every
#      version against fp8 caches), ops/rope)
#   3. apb bench kernel decode at $LENGTHS (default 8k,16k,64k,128k): versions 2 and 3, bf16 and fp8 caches, same call
#   4. apb bench decode at $CONTEXTS (default 8k,128k), bf16 and fp8 caches, once with version 2 (APB_DECODE_KERNEL=2pf)
#      and once with version 3: ms/token of a Llama-3.1-8B step (#19's bars: 10 ms at 128K, 6 at 8K; 7 at 128K with fp8)
# SKIP (space-separated) leaves out steps: ptxas, tests, kernel, decode.
# Everything lands in $OUT/decode-mma.tar.gz with a summary in $OUT/summary.md (printed last).
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-decode-mma}
LENGTHS=${LENGTHS:-8k,16k,64k,128k}
CONTEXTS=${CONTEXTS:-8k,128k}
SKIP=${SKIP:-}
begin_run apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests

skip ptxas || ptxas_summary src/Apb.Core/Backends/Cuda/Kernels/decode_mma.cu "decode3"
skip tests || gpu_tests_summary "${FILTER:-decode/v3,fp8kv/decode,ops/rope}"

if ! skip kernel; then
  step "bench kernel decode $LENGTHS, versions 2 and 3"
  timeout 300 "$APB" bench kernel decode --lengths "$LENGTHS" --variants split-kv2pf,split-kv3,split-kv2pf-fp8,split-kv3-fp8 \
    --out "$WORK/kernel-decode.json" > "$WORK/kernel-decode.md" 2> "$WORK/kernel-decode.log"
  summarize $? kernel-decode "bench kernel decode, versions 2 (prefetch) and 3, bf16 and fp8 (same call)"
fi

if ! skip decode; then
  for v in 2pf 3; do
    step "bench decode auto,fp8 at $CONTEXTS, APB_DECODE_KERNEL=$v"
    APB_DECODE_KERNEL=$v timeout 280 "$APB" bench decode --device cuda --shape llama-3.1-8b --contexts "$CONTEXTS" \
      --kv-cache-dtype auto,fp8 --out "$WORK/decode-v$v" > "$WORK/decode-v$v.md" 2> "$WORK/decode-v$v.log"
    summarize $? "decode-v$v" "bench decode, Llama-3.1-8B shape, bf16 and fp8 caches, decode kernel $v"
  done
fi

tar -czf "$OUT/decode-mma.tar.gz" -C "$WORK" .
step "done"
cat "$SUMMARY"
