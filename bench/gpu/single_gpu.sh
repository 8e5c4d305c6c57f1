#!/usr/bin/env bash
# Everything that needs one GPU and no peer GPU, in one call (`CUDA_VISIBLE_DEVICES=0 bash bench/gpu/single_gpu.sh` on
# the GPU machine, with the apb binary published beforehand), so another GPU of the machine can do other work meanwhile:
#   1. bench/gpu/run.sh: doctor, ptxas report, the GPU tests (every op vs the CPU), attention / decode / gemm timings
#   2. attention shapes beyond the causal square: non-causal, and causal with extra keys (APB's passing block), ours
#      (the kernel the backend picks) and torch SDPA (FA2, cuDNN) where SDPA has the same shape
#   3. decode ms/token: apb bench decode and bench/peers/hf_decode.py (32K, 128K contexts)
# Everything lands in $OUT/single/ (summary.md + one tar of all logs and JSON: few files come back from $OUT).
source "$(dirname "$0")/env.sh"
DEST="$OUT/single"; WORK=$(mktemp -d /tmp/apb-single.XXXX)
mkdir -p "$DEST"
DECODE_CONTEXTS=${DECODE_CONTEXTS:-32k,128k}
S="$DEST/summary.md"

step "1. run.sh (GPU tests, kernel timings)"
APB="$APB" GPU_TESTS="$GPU_TESTS" OUT="$WORK/check" RES="$WORK/check" TESTS_TIMEOUT=${TESTS_TIMEOUT:-240} timeout 600 bash bench/gpu/run.sh >"$WORK/run.log" 2>&1
echo "run.sh rc=$?" >>"$WORK/run.log"
{ echo "# single-GPU checks and benchmarks ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(date -u +%F))"; echo;
  echo '```'; grep -E "^[0-9]+ passed, [0-9]+ failed|^FAIL" "$WORK/check/gpu-tests.txt" | head -30; echo '```'; echo;
  for k in attention decode gemm; do grep -E "^\|" "$WORK/check/kernel-$k.md"; echo; done; } >"$S"

step "2. attention shapes"
{
  timeout 120 "$APB" bench kernel attention --variants auto --lengths 16k,64k,128k --mask both 2>>"$WORK/attn.log" | grep "^| attention"
  timeout 90 "$APB" bench kernel attention --variants auto --lengths 32k,64k --mask causal --extra-keys 4096 2>>"$WORK/attn.log" | grep "^| attention"
} >"$WORK/attention.md"
for m in causal none; do
  timeout 120 python3 bench/peers/attention_sdpa.py --lengths 16k,64k,128k --mask $m 2>>"$WORK/attn.log" | grep "^| torch" | sed "s/^| torch/| $m | torch/"
done >"$WORK/sdpa.md"
{ echo; echo "## attention (ours: apb bench kernel attention --variants auto; torch SDPA: bench/peers/attention_sdpa.py)"; echo;
  echo "| kernel | variant | shape | median ms | min ms | runs | rate | of peak |"; echo "|---|---|---|---|---|---|---|---|"; cat "$WORK/attention.md"; echo;
  echo "| mask | kernel | N | heads q/kv | d | median ms | min ms | TFLOP/s |"; echo "|---|---|---|---|---|---|---|---|"; cat "$WORK/sdpa.md"; } >>"$S"

step "3. decode"
timeout ${T_DECODE:-200} "$APB" bench decode --device cuda --shape llama-3.1-8b --contexts "$DECODE_CONTEXTS" --tokens 32 \
  --out "$WORK/ours-decode" >"$WORK/ours-decode.md" 2>"$WORK/ours-decode.log"; echo "rc=$?" >>"$WORK/ours-decode.log"
timeout ${T_HF_DECODE:-200} python3 bench/peers/hf_decode.py --contexts "$DECODE_CONTEXTS" --tokens 32 \
  --out "$WORK/hf-decode.json" >"$WORK/hf-decode.md" 2>"$WORK/hf-decode.log"; echo "rc=$?" >>"$WORK/hf-decode.log"
{ echo; echo "## decode ms/token (apb bench decode, then bench/peers/hf_decode.py)"; echo; grep -E "^\|" "$WORK/ours-decode.md"; echo;
  grep -E "^\|" "$WORK/hf-decode.md"; } >>"$S"

step "done"
tar czf "$DEST/single-gpu-logs.tar.gz" -C "$WORK" . 2>/dev/null
cat "$S"
