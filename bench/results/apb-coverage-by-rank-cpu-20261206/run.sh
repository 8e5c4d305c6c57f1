#!/usr/bin/env bash
# apb eval coverage by rank on run 12 (models/embedded since session 28), one sample each of multikey_2 and multikey_3
# at 64K on 8 ranks, Star against APB with nothing passed and with the default l_p 512; the 2-core dev machine's CPU,
# the Release build of a73dcd2 (the first with the per-rank output error).
A=${APB:-apb}
for t in niah_multikey_2 niah_multikey_3; do
  s=$(date +%s)
  $A eval coverage --model models/embedded --task $t --length 64k --ranks 8 --passing 0,512 --out $t-64k-x8.json > $t-64k-x8.md 2> $t-64k-x8.log
  echo "$t rc=$? $(( $(date +%s) - s )) s" >> times.txt
done
