#!/usr/bin/env bash
# Several bench/gpu scripts in one device call, each into its own folder of $OUT (the device tool brings back at most
# 8 files; each script leaves two), in the order of $SCRIPTS, each bounded by its share of the call:
#   decode     decode.sh: GPU tests of $FILTER, the decode kernels, the serving bars (this build and .gpu/apb-prev.xz)
#   scorer     scorer.sh: RULER tables of APB's scorers against full attention
#   machinery  apb_machinery.sh: APB's phases per rank and the modeled multi-GPU prefill at 128K
# SCRIPTS (default "decode scorer machinery") and LIMITS (seconds per script, same order; default "260 150 190")
# choose; every other variable goes through to the scripts. A short table of each script's summary is printed last.
source "$(dirname "$0")/env.sh"
SCRIPTS=(${SCRIPTS:-decode scorer machinery})
LIMITS=(${LIMITS:-260 150 190})
ROOT_OUT=$OUT
for i in "${!SCRIPTS[@]}"; do
  name=${SCRIPTS[$i]}; limit=${LIMITS[$i]:-200}
  script=bench/gpu/$name.sh; [ "$name" = machinery ] && script=bench/gpu/apb_machinery.sh
  mkdir -p "$ROOT_OUT/$name"
  step "$name ($script, at most $limit s)"
  OUT=$ROOT_OUT/$name timeout "$limit" bash "$script" > "$ROOT_OUT/$name/stdout.txt" 2>&1
  echo "$name exit $?" | tee -a "$ROOT_OUT/exits.txt"
done
for name in "${SCRIPTS[@]}"; do
  echo; echo "######## $name"
  if [ -s "$ROOT_OUT/$name/summary.md" ]; then cat "$ROOT_OUT/$name/summary.md"; else tail -25 "$ROOT_OUT/$name/stdout.txt"; fi
done
