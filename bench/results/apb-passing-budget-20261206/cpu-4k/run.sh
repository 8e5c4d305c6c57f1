#!/usr/bin/env bash
# The default passing budget below APB's operating range: RULER at 4K on 4 ranks on the CPU (block 1,024, l_p 512 by
# the floor, B 1024: rank 3 reads 341 rows of each sender instead of 512), run 12, the samples of
# ../../train-run12-20261206/cpu-4k (seed 0, 20 a task), paired with that folder's budget-free APB rows.
# From the repository root: bash bench/results/apb-passing-budget-20261206/cpu-4k/run.sh (APB= the binary)
A=${APB:-apb}; D=bench/results/apb-passing-budget-20261206/cpu-4k; s=$(date +%s)
$A eval ruler --model models/embedded --device cpu --tasks all --samples 20 --length 4k --ranks 4 --strategies apb --json $D/default-4k.json > $D/default-4k.md 2> $D/default-4k.log
echo "default-4k rc=$? $(( $(date +%s) - s )) s" >> $D/times.txt
$A eval paired bench/results/train-run12-20261206/cpu-4k/run12-4k.json $D/default-4k.json --strategy apb > $D/paired.txt 2>&1
