#!/usr/bin/env bash
# The coverage by rank of ../../apb-coverage-by-rank-cpu-20261206 (same samples, rows and model) for APB under the
# default passing budget at 64K on 8 ranks (l_p 512, B 1024), on the CPU: bash run.sh (from this folder; APB= the binary).
A=${APB:-apb}
for task in niah_multikey_2 niah_multikey_3; do
  start=$(date +%s)
  "$A" eval coverage --model ../../../../models/embedded --task $task --length 64k --ranks 8 --passing 512 --passing-budget 1024 \
    --out $task-64k-x8-b1024.json > $task-64k-x8-b1024.md
  echo "$task $(( $(date +%s) - start )) s" >> times.txt
done
