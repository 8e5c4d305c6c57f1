#!/usr/bin/env bash
# Issue #19's bars measured again in one place, on one card, at one commit (docs/kernels/README.md, "Issue #19's bars"):
# `PART=1 bash bench/gpu/bars19.sh` (the kernels: attention bf16 and QK8 beside cuDNN and the card's own GEMM, the
# split-KV decode kernel), then `PART=2` (end to end: the 8B prefill at 32K / 128K, bf16 and fp8 attention; the
# decode step at 8K / 128K, bf16 and fp8 cache), and `PART=3` (the 256K prefill, bf16 and fp8 attention: about 67
# GiB, more than an 80 GB H100 has free, so an H200's call). Parts so that each fits one device call; on a warm machine
# a later part reuses an earlier one's compiled kernels. Needs the published apb (tools/publish-gpu.sh; unpack_builds) and, for
# cuDNN, torch. Writes $OUT/bars19-partN.md (the table lines) and $OUT/bars19-partN.tgz (every log and JSON).
source "$(dirname "$0")/env.sh"
require_apb
PART=${PART:-1}
WORK=$(mktemp -d /tmp/bars19.XXXX)
SUMMARY="$OUT/bars19-part$PART.md"
CALL_LIMIT=${CALL_LIMIT:-540}   # env.sh's left(): the seconds this call has left
# run NAME SECONDS CMD...: one command under a time limit (never past the call's), its table lines into the summary.
run() {
  local name=$1 limit=$2; shift 2
  [ "$(left)" -lt 20 ] && { echo "skipped $name: the call's time is spent" | tee -a "$SUMMARY"; return; }
  [ "$limit" -gt "$(( $(left) - 10 ))" ] && limit=$(( $(left) - 10 ))
  step "$name ($limit s)"
  timeout "$limit" "$@" > "$WORK/$name.md" 2> "$WORK/$name.log"
  summarize $? "$name" "$name (+$(( $(date +%s) - t0 )) s): ${*/#$ROOT\//}" '^\||TFLOP/s|TB/s|^[0-9]+ passed'
}
{ echo "# #19's bars, part $PART: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1), $(date -u +%F),"
  echo "apb of $(cat publish/builds/CURRENT 2>/dev/null || echo '?') ($(cat publish/builds/$(cat publish/builds/CURRENT 2>/dev/null)/commit.txt 2>/dev/null || echo 'commit not recorded'))"; } > "$SUMMARY"

if [ "$PART" = 1 ]; then
  run attention-causal 150 "$APB" bench kernel attention --variants hopper,hopper-qk8 --mask causal --lengths 16k,64k,128k --rounds 2 --out "$WORK/attention-causal.json"
  run attention-none 60 "$APB" bench kernel attention --variants hopper --mask none --lengths 128k --rounds 2 --out "$WORK/attention-none.json"
  run gemm 40 "$APB" bench kernel gemm --lengths 16384 --rounds 2 --out "$WORK/gemm.json"
  run cudnn-causal 90 python3 bench/peers/attention_sdpa.py --lengths 16k,64k,128k --mask causal
  run cudnn-none 60 python3 bench/peers/attention_sdpa.py --lengths 128k --mask none
  run decode-kernel 90 "$APB" bench kernel decode --variants split-kv3,split-kv3-fp8,split-kv3-onehead,split-kv3-fp8-onehead --lengths 128k --rounds 3 --out "$WORK/decode-kernel.json"
elif [ "$PART" = 2 ]; then
  run prefill-bf16 150 "$APB" bench prefill --device cuda --shape llama-3.1-8b --lengths 32k,128k --query 64 --strategies full --warmup 1 --repeats 3 --no-profile --out "$WORK/prefill-bf16"
  run prefill-fp8 130 "$APB" bench prefill --device cuda --shape llama-3.1-8b --lengths 32k,128k --query 64 --strategies full --warmup 1 --repeats 3 --no-profile --prefill-attention fp8 --out "$WORK/prefill-fp8"
  run decode 150 "$APB" bench decode --device cuda --shape llama-3.1-8b --contexts 8k,128k --kv-cache-dtype auto,fp8 --out "$WORK/decode"
else
  # 32K first, untimed in effect (--warmup 0: its run compiles the kernels), so that 256K's one run is warm without a
  # 33-second warm-up run of its own.
  run prefill-256k ${T_256K:-200} "$APB" bench prefill --device cuda --shape llama-3.1-8b --lengths 32k,256k --query 64 --strategies full --warmup 0 --repeats ${REPEATS_256K:-1} --no-profile --out "$WORK/prefill-256k"
  run prefill-256k-fp8 ${T_256K:-200} "$APB" bench prefill --device cuda --shape llama-3.1-8b --lengths 32k,256k --query 64 --strategies full --warmup 0 --repeats ${REPEATS_256K:-1} --no-profile --prefill-attention fp8 --out "$WORK/prefill-256k-fp8"
fi
tar czf "$OUT/bars19-part$PART.tgz" -C "$WORK" . 2>/dev/null
cat "$SUMMARY"
