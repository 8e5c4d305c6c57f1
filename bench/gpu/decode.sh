#!/usr/bin/env bash
# The decode kernels and the serving bar on one GPU, in one call (`bash bench/gpu/decode.sh` from the repository root;
# binaries as for runtime.sh: .gpu/apb.xz and .gpu/Apb.Gpu.Tests.xz, and optionally .gpu/apb-prev.xz, an earlier build
# to compare against in the same call, all unpacked here):
#   1. ptxas -v of decode.cu (registers and spills per kernel), when nvcc is there
#   2. the GPU tests of $FILTER (default: decode, ops, models, smoke)
#   3. apb bench kernel decode at $LENGTHS: every split-KV version, one sequence and a batch of 16 caches of Tk/16 keys,
#      the splits aimed at one full wave (the default), then version 2 again at $SWEEP blocks per SM (default "1 3";
#      APB_DECODE_BLOCKS_PER_SM)
#   4. the serving bars of issue #15: apb bench serve --experiment batch (16 requests of 8K context together vs one
#      alone) with this build, then with apb-prev; --experiment ttft (a 32K prompt alone vs during 15 decodes of 8K)
#   5. apb bench decode (ms per token after 8K and 128K of context), this build then apb-prev
# SKIP (space-separated) leaves out steps: ptxas, tests, kernel, serve, ttft, e2e.
# Everything lands in $OUT/decode.tar.gz with a summary in $OUT/summary.md (printed last).
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-decode}
LENGTHS=${LENGTHS:-8k,32k,128k}
SKIP=${SKIP:-}
begin_run apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests apb-prev:publish/prev/apb
APB_PREV=${APB_PREV:-$ROOT/publish/prev/apb}

skip ptxas ||
  ptxas_summary src/Apb.Core/Backends/Cuda/Kernels/decode.cu "decode2_(split|batch)_d128_p[48]|decode_split_d128|decode_batch_d128|spill"

skip tests || gpu_tests_summary "${FILTER:-decode/,ops/,models/,smoke/}"

if [[ " $SKIP " != *" kernel "* ]]; then
  step "bench kernel decode"
  timeout 150 "$APB" bench kernel decode --lengths "$LENGTHS" --variants split-kv,split-kv2,split-kv2pf,split-kv1 \
    --out "$WORK/kernel" > "$WORK/kernel.md" 2> "$WORK/kernel.log"
  echo "bench kernel decode exit $?" >> "$SUMMARY"
  for n in ${SWEEP-1 3}; do
    APB_DECODE_BLOCKS_PER_SM=$n timeout 100 "$APB" bench kernel decode --lengths "$LENGTHS" --variants split-kv2,split-kv2pf \
      --out "$WORK/kernel-bps$n" > "$WORK/kernel-bps$n.md" 2> "$WORK/kernel-bps$n.log"
    echo "bench kernel decode, $n blocks per SM, exit $?" >> "$SUMMARY"
  done
  { echo "### kernel (one wave, then each count of SWEEP)"; grep -E "^\| decode" "$WORK/kernel.md";
    for n in ${SWEEP-1 3}; do grep -E "^\| decode" "$WORK/kernel-bps$n.md" | sed "s/^| decode/| decode bps$n/"; done; } >> "$SUMMARY"
fi

if [[ " $SKIP " != *" serve "* ]]; then
  for who in new prev; do
    bin=$APB; [ $who = prev ] && bin=$APB_PREV
    [ -x "$bin" ] || continue
    step "serving: batched decode, 16 x 8K, $who build"
    timeout 200 "$bin" bench serve --shape llama-3.1-8b --device cuda --experiment batch --prompt-lengths 8k \
      --batch 16 --output-tokens 48 --out "$WORK/serve-batch-$who" > "$WORK/serve-batch-$who.md" 2> "$WORK/serve-batch-$who.log"
    summarize $? "serve-batch-$who" "serving, batched decode, $who build"
  done
  if [[ " $SKIP " != *" ttft "* ]]; then
    step "serving: TTFT of 32K during 15 decodes of 8K"
    timeout 300 "$APB" bench serve --shape llama-3.1-8b --device cuda --experiment ttft --prompt-lengths 32k --batch 15 \
      --background-length 8k --repeats 3 --out "$WORK/serve-ttft" > "$WORK/serve-ttft.md" 2> "$WORK/serve-ttft.log"
    summarize $? serve-ttft "serving, TTFT"
  fi
fi

if [[ " $SKIP " != *" e2e "* ]]; then
  for who in new prev; do
    bin=$APB; [ $who = prev ] && bin=$APB_PREV
    [ -x "$bin" ] || continue
    step "bench decode ${DECODE_LENGTHS:-8k,128k}, $who build"
    timeout 200 "$bin" bench decode --device cuda --shape llama-3.1-8b --lengths ${DECODE_LENGTHS:-8k,128k} \
      --tokens 32 --out "$WORK/decode-$who" > "$WORK/decode-$who.md" 2> "$WORK/decode-$who.log"
    summarize $? "decode-$who" "bench decode, $who build"
  done
fi

step "packing"
cp "$SUMMARY" "$WORK/summary.md"
tar -czf "$OUT/decode.tar.gz" -C "$WORK" . 2>/dev/null
echo; cat "$SUMMARY"
