#!/usr/bin/env bash
# Session 29, call 3 (#20): the passing budget B = 2 l_p on run 12 (models/embedded), where call 2 has not measured it:
# every task at 64K x8 on seed 1 with and without it (one invocation per setting: the budget applies to every APB row
# of a run), every task at 32K x4 with B = 512 (l_p 256 there; run 12's call 2 APB file, seed 0, pairs with it),
# multi-key at 32K x4 (200 a task, run 12's call 4 file) and balanced APB under B = 1024 on the 64K x8 multi-key samples
# (run 12's call 4 balanced file). Runs outside $OUT, back as runs.tgz.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
export RUNS=/tmp/s29/r3; rm -rf $RUNS; mkdir -p $RUNS
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-470} - ($(date +%s) - T0) )); }
ALL64="--tasks all --samples 60 --length 64k --ranks 8 --strategies apb --seed 1"
ruler_run n-x8-64k-s1 $(( $(left) - 10 )) $ALL64
pack_runs
[ "$(left)" -gt 110 ] && ruler_run n-x8-64k-b1024-s1 $(( $(left) - 10 )) $ALL64 --passing-budget 1024
pack_runs
[ "$(left)" -gt 60 ] && ruler_run n-x4-32k-b512 $(( $(left) - 8 )) --tasks all --samples 60 --length 32k --ranks 4 --strategies apb --passing-budget 512
pack_runs
[ "$(left)" -gt 45 ] && ruler_run mk-x4-32k-b512 $(( $(left) - 6 )) --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 32k --ranks 4 --strategies apb --passing-budget 512
pack_runs
[ "$(left)" -gt 95 ] && ruler_run mk-x8-64k-balanced-b1024 $(( $(left) - 4 )) --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 64k --ranks 8 --strategies apb-balanced --passing-budget 1024
pack_runs
cat $RUNS/times.txt
