#!/usr/bin/env bash
# Balanced APB against contiguous APB on one GPU (issue #20), in one call (`bash bench/gpu/balanced.sh` from the
# repository root; the apb binary published, or packed in .gpu/apb.xz):
#   1. apb bench kernel critical-path at 8 and 4 ranks: each rank's attention (its exact masks, from the plan the
#      strategy runs), GEMMs and scoring timed alone at 128K, Llama-3.1-8B shape; the slowest rank per layer plus the
#      transfer sizes make the modeled multi-GPU prefill of apb, apb-balanced and the zigzag ring
#   2. apb eval ruler, full / apb / apb-balanced with the defaults (the retaining heads where the model ships them), all
#      tasks, the same samples for every strategy, at each of RANKS_LIST (default "4 8") over LENGTHS (default 16k),
#      SAMPLES per task (default 20)
# Writes $OUT/balanced.tar.gz and $OUT/summary.md (printed last).
source "$(dirname "$0")/env.sh"
WORK=${WORK:-/tmp/apb-balanced}
MODEL=${MODEL:-models/embedded}
LENGTHS=${LENGTHS:-16k}
SAMPLES=${SAMPLES:-20}
RANKS_LIST=${RANKS_LIST:-4 8}
begin_run apb:publish/linux-x64/apb
require_model

step "bench kernel critical-path 8,4"
timeout 300 "$APB" bench kernel critical-path --lengths 8,4 --out "$WORK/critical-path.json" > "$WORK/critical-path.md" 2> "$WORK/critical-path.log"
echo "bench kernel critical-path exit $?" >> "$SUMMARY"
{ echo "### critical path (per rank and layer, ms; modeled prefill)"; grep -E "critical path|^  " "$WORK/critical-path.log"; } >> "$SUMMARY"

for ranks in $RANKS_LIST; do
  name=ruler-x$ranks
  step "eval ruler full,apb,apb-balanced x$ranks $LENGTHS"
  timeout 300 "$APB" eval ruler --model "$MODEL" --device cuda --tasks all --length "$LENGTHS" --samples "$SAMPLES" \
    --ranks "$ranks" --strategies full,apb,apb-balanced --json "$WORK/$name.json" > "$WORK/$name.md" 2> "$WORK/$name.log"
  summarize $? "$name" "RULER, $ranks ranks, $LENGTHS, $SAMPLES samples per task"
done

tar -czf "$OUT/balanced.tar.gz" -C "$WORK" .
step "done"
cat "$SUMMARY"
