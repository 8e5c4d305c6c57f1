#!/usr/bin/env bash
# The decode kernels on one GPU, in one call (`bash bench/gpu/decode.sh` from the repository root; binaries as for
# runtime.sh: .gpu/apb.xz and .gpu/Apb.Gpu.Tests.xz, unpacked here):
#   1. ptxas -v of decode.cu (registers and spills per kernel), when nvcc is there
#   2. the GPU tests of group decode (versions 1, 2 and 2 with prefetch against the CPU reference)
#   3. apb bench kernel decode at $LENGTHS: every split-KV version, one sequence and a batch of 16 caches of Tk/16 keys;
#      then version 2 (and 2pf) again with the splits aimed at 2 and 8 blocks per SM (APB_DECODE_BLOCKS_PER_SM)
#   4. the serving bar of issue #15: apb bench serve --experiment batch (16 requests of 8K context together vs one
#      alone), with version 2 then version 1 (APB_DECODE_KERNEL=1), same call
#   5. apb bench decode (ms per token after 8K and 128K of context) with version 2 then version 1
# Everything lands in $OUT/decode.tar.gz with a summary in $OUT/summary.md (printed last).
source "$(dirname "$0")/env.sh"
PACK=${PACK:-$ROOT/.gpu}
WORK=${WORK:-/tmp/apb-decode}
LENGTHS=${LENGTHS:-8k,32k,128k}
SKIP=${SKIP:-}
mkdir -p "$WORK" publish/linux-x64 publish/gpu-tests
for f in apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests; do
  src=$PACK/${f%%:*}.xz; dst=${f#*:}
  [ -f "$src" ] && xz -dc "$src" > "$dst" && chmod +x "$dst"
done
SUMMARY=$OUT/summary.md
: > "$SUMMARY"
require_apb

if command -v nvcc >/dev/null && [[ " $SKIP " != *" ptxas "* ]]; then
  step "ptxas -v decode.cu"
  timeout 120 nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -o /tmp/decode.cubin -Xptxas -v \
    src/Apb.Core/Backends/Cuda/Kernels/decode.cu > "$WORK/ptxas.txt" 2>&1
  echo "ptxas exit $?" >> "$SUMMARY"
  grep -E "Compiling entry|registers|spill" "$WORK/ptxas.txt" | paste - - - | sed -E 's/ptxas info *: //g' \
    | awk '{print}' | grep -E "decode2_(split|batch)_d128_p[48]|decode_split_d128|decode_batch_d128|spill" | head -40 >> "$SUMMARY"
fi

if [[ " $SKIP " != *" tests "* ]]; then
  require_gpu_tests
  step "GPU tests, group decode"
  timeout ${TESTS_TIMEOUT:-200} "$GPU_TESTS" --filter decode/ --out "$WORK/gpu-tests.json" > "$WORK/gpu-tests.txt" 2>&1
  echo "GPU tests exit $?: $(tail -1 "$WORK/gpu-tests.txt")" | tee -a "$SUMMARY"
  grep -E "FAIL" "$WORK/gpu-tests.txt" | head -20 | tee -a "$SUMMARY"
fi

if [[ " $SKIP " != *" kernel "* ]]; then
  step "bench kernel decode"
  timeout 150 "$APB" bench kernel decode --lengths "$LENGTHS" --variants split-kv,split-kv2pf,split-kv1 \
    --out "$WORK/kernel" > "$WORK/kernel.md" 2> "$WORK/kernel.log"
  echo "bench kernel decode exit $?" >> "$SUMMARY"
  for n in 2 8; do
    APB_DECODE_BLOCKS_PER_SM=$n timeout 100 "$APB" bench kernel decode --lengths "$LENGTHS" --variants split-kv,split-kv2pf \
      --out "$WORK/kernel-bps$n" > "$WORK/kernel-bps$n.md" 2> "$WORK/kernel-bps$n.log"
    echo "bench kernel decode, $n blocks per SM, exit $?" >> "$SUMMARY"
  done
  { echo "### kernel (4 blocks per SM, then 2, then 8)"; grep -E "^\| decode" "$WORK/kernel.md";
    grep -E "^\| decode" "$WORK/kernel-bps2.md" | sed 's/^| decode/| decode bps2/';
    grep -E "^\| decode" "$WORK/kernel-bps8.md" | sed 's/^| decode/| decode bps8/'; } >> "$SUMMARY"
fi

if [[ " $SKIP " != *" serve "* ]]; then
  for v in 2 1; do
    step "serving: batched decode, 16 x 8K, decode kernel $v"
    APB_DECODE_KERNEL=$v timeout 200 "$APB" bench serve --shape llama-3.1-8b --device cuda --experiment batch --prompt-lengths 8k \
      --batch 16 --output-tokens 48 --out "$WORK/serve-batch-v$v" > "$WORK/serve-batch-v$v.md" 2> "$WORK/serve-batch-v$v.log"
    echo "serve batch v$v exit $?" >> "$SUMMARY"
    { echo "### serving, batched decode, kernel v$v"; grep -E "^\|" "$WORK/serve-batch-v$v.md"; } >> "$SUMMARY"
  done
fi

if [[ " $SKIP " != *" e2e "* ]]; then
  for v in 2 1; do
    step "bench decode 8k,128k, decode kernel $v"
    APB_DECODE_KERNEL=$v timeout 200 "$APB" bench decode --device cuda --shape llama-3.1-8b --lengths ${DECODE_LENGTHS:-8k,128k} \
      --tokens 32 --out "$WORK/decode-v$v" > "$WORK/decode-v$v.md" 2> "$WORK/decode-v$v.log"
    echo "bench decode v$v exit $?" >> "$SUMMARY"
    { echo "### bench decode, kernel v$v"; grep -E "^\|" "$WORK/decode-v$v.md"; } >> "$SUMMARY"
  done
fi

step "packing"
cp "$SUMMARY" "$WORK/summary.md"
tar -czf "$OUT/decode.tar.gz" -C "$WORK" . 2>/dev/null
echo; cat "$SUMMARY"
