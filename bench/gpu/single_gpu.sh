#!/usr/bin/env bash
# Everything that needs one GPU and no peer GPU, in one call (`CUDA_VISIBLE_DEVICES=0 bash bench/gpu/single_gpu.sh` on
# the GPU machine, with the apb binary published beforehand), so another GPU of the machine can do other work meanwhile:
#   1. bench/gpu/run.sh: doctor, ptxas report, check-kernels (every op vs the CPU) with attention timings
#   2. attention shapes beyond the causal square: non-causal, and causal with extra keys (APB's passing block), ours and
#      torch SDPA (FA2, cuDNN) where SDPA has the same shape
#   3. decode ms/token: apb bench decode and bench/peers/hf_decode.py (32K, 128K contexts)
# Everything lands in $OUT/single/ (summary.md + one tar of all logs and JSON: few files come back from $OUT).
source "$(dirname "$0")/env.sh"
DEST="$OUT/single"; WORK=$(mktemp -d /tmp/apb-single.XXXX)
mkdir -p "$DEST"
DECODE_CONTEXTS=${DECODE_CONTEXTS:-32k,128k}
S="$DEST/summary.md"

step "1. run.sh (check-kernels)"
APB="$APB" OUT="$WORK/check" RES="$WORK/check" CHECK_TIMEOUT=${CHECK_TIMEOUT:-240} timeout 300 bash bench/gpu/run.sh >"$WORK/run.log" 2>&1
echo "run.sh rc=$?" >>"$WORK/run.log"
{ echo "# single-GPU checks and benchmarks ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(date -u +%F))"; echo;
  echo '```'; grep -E "^check-kernels:|FAIL" "$WORK/check/check-kernels.txt" | head -30; sed -n '/^timing/,$p' "$WORK/check/check-kernels.txt"; echo '```'; } >"$S"

step "2. attention shapes"
{
  for m in causal none; do
    timeout 90 "$APB" bench attention --device cuda --lengths 16k,64k,128k --mask $m 2>>"$WORK/attn.log" | grep "^| apb"
    timeout 120 python3 bench/peers/attention_sdpa.py --lengths 16k,64k,128k --mask $m 2>>"$WORK/attn.log" | grep "^| torch"
  done
  timeout 90 "$APB" bench attention --device cuda --lengths 32k,64k --mask causal --extra-keys 4096 2>>"$WORK/attn.log" | grep "^| apb"
} >"$WORK/attention.md"
{ echo; echo "## attention (ours: | kernel | N | heads | d | mask | median | min | TFLOP/s |; torch rows have no mask column)"; echo;
  echo "| kernel | N | heads q/kv | d | mask | median ms | min ms | TFLOP/s |"; echo "|---|---|---|---|---|---|---|---|"; cat "$WORK/attention.md"; } >>"$S"

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
