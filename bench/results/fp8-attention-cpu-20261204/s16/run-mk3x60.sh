#!/usr/bin/env bash
# APB x4 at 16K, multikey_3 x 60 samples (the first 20 as in apb16-*), unrounded then q,k rounded.
A=/tmp/oldtree/src/Apb.Cli/bin/Release/net10.0/apb
M=/work/main/models/embedded
for mode in none qk; do
  t=$(date +%s)
  if [ $mode = none ]; then env -u APB_STUDY_FP8_ATTENTION $A eval ruler --model $M --device cpu --tasks niah_multikey_3 --length 16k --samples 60 --ranks 4 --strategies apb --out apb16mk3x60-$mode.json > apb16mk3x60-$mode.md 2> apb16mk3x60-$mode.log
  else APB_STUDY_FP8_ATTENTION=$mode $A eval ruler --model $M --device cpu --tasks niah_multikey_3 --length 16k --samples 60 --ranks 4 --strategies apb --out apb16mk3x60-$mode.json > apb16mk3x60-$mode.md 2> apb16mk3x60-$mode.log; fi
  echo "mk3x60 $mode rc=$? $(( $(date +%s) - t )) s" >> queue.log
done
