#!/usr/bin/env bash
# What fp8 prefill attention would cost in accuracy, emulated on the GPU (docs/notes/fp8-attention.md): the accuracy
# harness twice on the same samples, once as shipped and once with q, k, v and P rounded through e4m3 by the kernels'
# study knobs, then each strategy's paired difference. `bash bench/gpu/fp8_attention_study.sh` from the repository root
# on the GPU machine (.gpu/apb.xz unpacked as for train.sh).
# Environment: MODEL (models/embedded), DEVICE (cuda; cpu with small settings checks the script anywhere, where the
# emulation's knobs do nothing and every difference is 0, while KIND=qk8 runs the CPU's reference rounding), LENGTHS
# (16k,32k), SAMPLES (100), TASKS (all), STRATEGIES (full,apb), RANKS (4),
# KIND (emulate: q, k, v and P rounded by the study knobs in the bf16 kernels; qk8: the QK8 kernel itself, S in e4m3
# and P V in bf16, --prefill-attention fp8), SUMS (emulate only; unrounded: the row sums of the fp32 P; rounded: of the
# e4m3 P the product used, through HOP_ROWSUM_MMA=1),
# T_RUN (seconds per run, 500), TOGETHER (auto: the two runs at once when STRATEGIES is full alone, else one after the
# other; 1 or 0 to force). Full attention's runs can share the GPU (the small model leaves it mostly idle; greedy
# decoding is deterministic, so neither's numbers depend on the other); the multi-rank strategies launch many small
# kernels per token and two processes time-slice the GPU badly (bench/results/long-context-20261205: APB 75 s alone,
# past 330 s beside another run). Writes base.* and fp8.* (json, md, log) and paired.txt to
# WORK (/tmp/apb-fp8-study), all of them as $OUT/fp8-study.tgz; prints the means and the paired lines. Exits 1 when a
# run failed.
source "$(dirname "$0")/env.sh"

MODEL=${MODEL:-models/embedded}
DEVICE=${DEVICE:-cuda}
LENGTHS=${LENGTHS:-16k,32k}
SAMPLES=${SAMPLES:-100}
TASKS=${TASKS:-all}
STRATEGIES=${STRATEGIES:-full,apb}
RANKS=${RANKS:-4}
SUMS=${SUMS:-unrounded}
T_RUN=${T_RUN:-500}
KIND=${KIND:-emulate}
DEST=${WORK:-/tmp/apb-fp8-study}
case $KIND/$SUMS in
  emulate/unrounded) FP8_DEFINES="APB_STUDY_FP8_QKV=1,HOP_STUDY_P_E4M3=1"; QK8=0 ;;
  emulate/rounded) FP8_DEFINES="APB_STUDY_FP8_QKV=1,HOP_STUDY_P_E4M3=1,HOP_ROWSUM_MMA=1"; QK8=0 ;;
  qk8/*) FP8_DEFINES=""; QK8=1 ;;   # through --prefill-attention fp8: on the CPU too, as its reference rounding
  *) echo "KIND=$KIND SUMS=$SUMS: expected KIND emulate (SUMS unrounded or rounded) or qk8"; exit 2 ;;
esac
unpack_binaries apb:publish/linux-x64/apb
require_apb
require_model
rm -rf "$DEST"; mkdir -p "$DEST"
sha256sum "$MODEL"/*.safetensors > "$DEST/model-sha.txt"

run() {
  local name=$1 defines=$2 qk8=$3 attention=bf16
  [ "$qk8" = 1 ] && attention=fp8
  APB_KERNEL_DEFINES="$defines" timeout "$T_RUN" "$APB" eval ruler --model "$MODEL" --device "$DEVICE" --tasks "$TASKS" \
    --samples "$SAMPLES" --length "$LENGTHS" --ranks "$RANKS" --strategies "$STRATEGIES" --prefill-attention "$attention" \
    --json "$DEST/$name.json" > "$DEST/$name.md" 2> "$DEST/$name.log"
  echo "$name (APB_KERNEL_DEFINES=$defines --prefill-attention $attention) rc=$?" >> "$DEST/runs.txt"
}

step "fp8 attention study ($KIND): $LENGTHS, $SAMPLES samples, $STRATEGIES on $RANKS ranks; fp8 run with defines '$FP8_DEFINES', APB_ATTENTION_QK_FP8=$QK8"
: > "$DEST/runs.txt"
TOGETHER=${TOGETHER:-auto}
[ "$TOGETHER" = auto ] && { [ "$STRATEGIES" = full ] && TOGETHER=1 || TOGETHER=0; }
if [ "$TOGETHER" = 1 ]; then
  run base "" 0 &
  run fp8 "$FP8_DEFINES" "$QK8" &
  wait
else
  run base "" 0
  run fp8 "$FP8_DEFINES" "$QK8"
fi
tar -czf "$OUT/fp8-study.tgz" -C "$DEST" .
step "done"
cat "$DEST/runs.txt"
status=0
grep -qv " rc=0$" "$DEST/runs.txt" && status=1
for f in base fp8; do echo "-- $f"; grep -E "\*\*mean\*\*" "$DEST/$f.md"; done
: > "$DEST/paired.txt"
for s in ${STRATEGIES//,/ }; do
  "$APB" eval paired "$DEST/base.json" "$DEST/fp8.json" --strategy "$s" >> "$DEST/paired.txt" 2>&1 || status=1
done
cat "$DEST/paired.txt"
exit $status
