#!/usr/bin/env bash
# APB x4 at 16K, all tasks x 20 samples, unrounded then q,k rounded to e4m3 (QK8's arithmetic); the study build.
A=/tmp/oldtree/src/Apb.Cli/bin/Release/net10.0/apb
M=/work/main/models/embedded
for mode in none qk; do
  t=$(date +%s)
  if [ $mode = none ]; then env -u APB_STUDY_FP8_ATTENTION $A eval ruler --model $M --device cpu --tasks all --length 16k --samples 20 --ranks 4 --strategies apb --out apb16-$mode.json > apb16-$mode.md 2> apb16-$mode.log
  else APB_STUDY_FP8_ATTENTION=$mode $A eval ruler --model $M --device cpu --tasks all --length 16k --samples 20 --ranks 4 --strategies apb --out apb16-$mode.json > apb16-$mode.md 2> apb16-$mode.log; fi
  echo "$mode rc=$? $(( $(date +%s) - t )) s" >> queue.log
done
