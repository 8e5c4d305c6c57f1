#!/usr/bin/env bash
# Session 30, call 2 (#20): the strategies on run 12 (models/embedded) under the shipped defaults where no run 12 file
# exists yet: the query-aware scorer at 64K x8, 64K on 4 ranks (APB, Star), 32K on 8 ranks (APB, Star); 60 samples a
# task, seed 0 (the samples of run 12's full-attention files at 64K and 32K). Runs outside $OUT, back as runs.tgz.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
export RUNS=/tmp/s30/r2; rm -rf $RUNS; mkdir -p $RUNS
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-500} - ($(date +%s) - T0) )); }
ALL64="--tasks all --samples 60 --length 64k"
ALL32="--tasks all --samples 60 --length 32k"
ruler_run n-x8-64k-query $(( $(left) - 10 )) $ALL64 --ranks 8 --strategies apb --scorer query
pack_runs
[ "$(left)" -gt 100 ] && ruler_run n-x4-64k $(( $(left) - 8 )) $ALL64 --ranks 4 --strategies apb
pack_runs
[ "$(left)" -gt 100 ] && ruler_run n-star-x4-64k $(( $(left) - 6 )) $ALL64 --ranks 4 --strategies star
pack_runs
[ "$(left)" -gt 60 ] && ruler_run n-x8-32k $(( $(left) - 4 )) $ALL32 --ranks 8 --strategies apb
pack_runs
[ "$(left)" -gt 60 ] && ruler_run n-star-x8-32k $(( $(left) - 2 )) $ALL32 --ranks 8 --strategies star
pack_runs
cat $RUNS/times.txt
