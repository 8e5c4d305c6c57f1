#!/usr/bin/env bash
# RULER accuracy with the C# harness on one GPU (`bash bench/gpu/accuracy.sh` from the repository root on the GPU
# machine, the apb binary published beforehand): `apb eval ruler --device cuda`, every strategy's ranks in-process on
# that GPU (threads, each with its own backend). The same samples (seed 0) as the CPU runs in the model card, so a GPU
# table can be set beside a CPU one; the GPU only makes more samples and longer contexts affordable.
#   1. full, star and apb (query-aware scorer) in one go over LENGTHS, SAMPLES per task
#   2. apb with the retaining-head scorer on the same samples (when the model folder has retaining_heads.safetensors)
#   3. apb (query-aware) with each passing length l_p in PASSING (a comma list; none by default): the accuracy side of
#      the l_p trade-off, against the default of ApbDefaults (n/64)
# Environment: MODEL (default models/embedded), LENGTHS (16k,32k), SAMPLES (20), RANKS (4), STRATEGIES (full,star,apb),
# TAG (a name for the files, default "ruler"), T_EVAL (seconds per eval step, 240), PASSING. CUDA_VISIBLE_DEVICES as the
# caller set it. Writes $OUT/accuracy/: TAG.json, TAG.md (the table), TAG-retaining.json/.md, TAG-lpN.json/.md, TAG.log;
# prints the tables.
source "$(dirname "$0")/env.sh"
require_apb

MODEL=${MODEL:-models/embedded}
LENGTHS=${LENGTHS:-16k,32k}
SAMPLES=${SAMPLES:-20}
RANKS=${RANKS:-4}
STRATEGIES=${STRATEGIES:-full,star,apb}
TAG=${TAG:-ruler}
T_EVAL=${T_EVAL:-240}
PASSING=${PASSING:-}
DEST="$OUT/accuracy"
mkdir -p "$DEST"
LOG="$DEST/$TAG.log"
status=0
[ -f "$MODEL/config.json" ] || { echo "no $MODEL/config.json: MODEL must be a HF checkpoint folder"; exit 2; }

COMMON=(--model "$MODEL" --device cuda --tasks all --length "$LENGTHS" --samples "$SAMPLES" --ranks "$RANKS")
# One eval step: eval_ruler NAME HEADING FLAGS...: `apb eval ruler` with COMMON and FLAGS, bounded by T_EVAL; writes
# $DEST/NAME.json and NAME.md, its stderr and "rc=... in N s" go to $LOG; a non-zero rc sets status=1.
eval_ruler() {
  local name=$1 heading=$2 t rc
  shift 2
  echo "== $name: $heading ($(date -u +%T))" | tee -a "$LOG"
  t=$(date +%s)
  timeout "$T_EVAL" "$APB" eval ruler "${COMMON[@]}" "$@" --json "$DEST/$name.json" >"$DEST/$name.md" 2>>"$LOG"
  rc=$?; echo "rc=$rc in $(( $(date +%s) - t )) s" | tee -a "$LOG"; [ $rc -eq 0 ] || status=1
}

eval_ruler "$TAG" "${STRATEGIES} x${RANKS}, $LENGTHS, $SAMPLES samples per task" --strategies "$STRATEGIES"
cat "$DEST/$TAG.md"

if [ -f "$MODEL/retaining_heads.safetensors" ] && [[ ",$STRATEGIES," == *",apb,"* ]]; then
  eval_ruler "$TAG-retaining" "apb x${RANKS} with the retaining heads" --strategies apb --scorer retaining
  cat "$DEST/$TAG-retaining.md"
fi
for lp in ${PASSING//,/ }; do
  eval_ruler "$TAG-lp$lp" "apb x${RANKS}, query-aware, passing length $lp" --strategies apb --passing "$lp"
  grep -F "**mean**" "$DEST/$TAG-lp$lp.md"
done
exit $status
