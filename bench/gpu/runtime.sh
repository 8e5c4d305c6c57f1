#!/usr/bin/env bash
# The runtime's checks on one GPU, in one call (`bash bench/gpu/runtime.sh` from the repository root):
#   1. run.sh: the GPU tests (every CUDA op and kernel against the CPU reference, fixture models end to end) and the
#      kernel timings of this build
#   2. the same-call comparison with a baseline build ($APB_OLD, default publish/old/apb): 1-GPU full prefill at
#      $PREFILL_LENGTHS and attention TFLOP/s, both binaries one after the other on the same GPU
#   3. the serving bars on one GPU (Llama-3.1-8B shape, random weights, the scheduler `apb serve` runs):
#      batched decode (16 requests of 8K context together vs one alone) and TTFT of a 32K prompt alone vs during
#      15 running decodes of 8K prompts
# Binaries travel xz-compressed (the working tree's size limit): apb.xz, apb-old.xz and Apb.Gpu.Tests.xz in
# $PACK (default .gpu), unpacked here first. Everything lands in $OUT/runtime.tar.gz with a summary in $OUT/summary.md.
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-runtime}
PREFILL_LENGTHS=${PREFILL_LENGTHS:-32k,128k}
SKIP=${SKIP:-}
begin_run apb:publish/linux-x64/apb apb-old:publish/old/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests
APB_OLD=${APB_OLD:-$ROOT/publish/old/apb}

if [[ " $SKIP " != *" check "* ]]; then
  step "run.sh (GPU tests, kernel timings)"
  OUT=$WORK/check RES=$WORK/check bash bench/gpu/run.sh > "$WORK/run.log" 2>&1
  echo "run.sh exit $?" | tee -a "$SUMMARY"
  sed -n '/== GPU test failures/,$p' "$WORK/run.log" | tee -a "$SUMMARY"
fi

if [[ " $SKIP " != *" baseline "* ]] && [ -x "$APB_OLD" ]; then
  for who in old new; do
    bin=$APB; [ $who = old ] && bin=$APB_OLD
    step "prefill full, 1 GPU, $who build ($PREFILL_LENGTHS)"
    timeout 400 "$bin" bench prefill --strategies full --lengths "$PREFILL_LENGTHS" --device cuda --no-profile --warmup 1 --repeats 3 \
      --out "$WORK/prefill-$who" > "$WORK/prefill-$who.md" 2> "$WORK/prefill-$who.log"
    echo "prefill $who exit $?" >> "$SUMMARY"
    step "attention, $who build"
    timeout 200 "$bin" bench attention > "$WORK/attention-$who.md" 2> "$WORK/attention-$who.log"
    echo "attention $who exit $?" >> "$SUMMARY"
  done
  { echo "### full prefill, 1 GPU: baseline then this build"; grep -E "^\|" "$WORK/prefill-old.md"; grep -E "^\|" "$WORK/prefill-new.md";
    echo "### attention: baseline then this build"; grep -E "^\|" "$WORK/attention-old.md"; grep -E "^\|" "$WORK/attention-new.md"; } >> "$SUMMARY"
fi

if [[ " $SKIP " != *" serve "* ]]; then
  step "serving: batched decode, 16 x 8K"
  timeout 300 "$APB" bench serve --shape llama-3.1-8b --device cuda --experiment batch --prompt-lengths 8k --batch 16 \
    --output-tokens 48 --out "$WORK/serve-batch" > "$WORK/serve-batch.md" 2> "$WORK/serve-batch.log"
  echo "serve batch exit $?" >> "$SUMMARY"
  step "serving: TTFT of 32K during 15 decodes of 8K"
  timeout 400 "$APB" bench serve --shape llama-3.1-8b --device cuda --experiment ttft --prompt-lengths 32k --batch 15 \
    --background-length 8k --repeats 3 --out "$WORK/serve-ttft" > "$WORK/serve-ttft.md" 2> "$WORK/serve-ttft.log"
  echo "serve ttft exit $?" >> "$SUMMARY"
  { echo "### serving"; grep -E "^\|" "$WORK/serve-batch.md"; grep -E "^\|" "$WORK/serve-ttft.md"; } >> "$SUMMARY"
fi

step "packing"
tar -czf "$OUT/runtime.tar.gz" -C "$WORK" . 2>/dev/null
echo; cat "$SUMMARY"
