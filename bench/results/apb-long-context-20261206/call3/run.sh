#!/usr/bin/env bash
# Session 30, call 3: bench/gpu/passing_budget.sh (the GPU cases of the budget, the best-first selection's time, the
# critical-path model with and without the default budget), then #20's remaining strategy cells on run 12 under the
# shipped defaults, 60 samples a task, seed 0, as long as the call's time allows.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
left() { echo $(( ${CALL_LIMIT:-500} - ($(date +%s) - T0) )); }
timeout ${PB_LIMIT:-260} bash bench/gpu/passing_budget.sh > $OUT/passing-budget.log 2>&1
echo "passing_budget.sh rc=$? after $(( $(date +%s) - T0 )) s"
export RUNS=/tmp/s30/r3; rm -rf $RUNS; mkdir -p $RUNS
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
ALL64="--tasks all --samples 60 --length 64k --ranks 4"
ALL32="--tasks all --samples 60 --length 32k --ranks 8"
[ "$(left)" -gt 60 ] && ruler_run n-x8-32k-query $(( $(left) - 5 )) $ALL32 --strategies apb --scorer query
pack_runs
[ "$(left)" -gt 60 ] && ruler_run n-balanced-x8-32k $(( $(left) - 4 )) $ALL32 --strategies apb-balanced
pack_runs
[ "$(left)" -gt 110 ] && ruler_run n-x4-64k-query $(( $(left) - 3 )) $ALL64 --strategies apb --scorer query
pack_runs
[ "$(left)" -gt 110 ] && ruler_run n-balanced-x4-64k $(( $(left) - 2 )) $ALL64 --strategies apb-balanced
pack_runs
cat $RUNS/times.txt
cat $OUT/summary.md 2>/dev/null
