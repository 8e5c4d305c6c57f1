#!/usr/bin/env bash
# Session 30, call 1 (#20): the strategies on run 12 (models/embedded) at 32K x4 under the shipped defaults (APB's
# passing budget 2 l_p = 1024 there), 60 samples a task, seed 0 (the samples of run 12's full-attention 32K file), and
# balanced APB on every task at 64K x8. Runs outside $OUT, back as runs.tgz.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_binaries
export RUNS=/tmp/s30/r1; rm -rf $RUNS; mkdir -p $RUNS
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $RUNS/times.txt
sha256sum models/embedded/*.safetensors >> $RUNS/times.txt
left() { echo $(( ${CALL_LIMIT:-500} - ($(date +%s) - T0) )); }
ALL32="--tasks all --samples 60 --length 32k --ranks 4"
ruler_run n-x4-32k $(( $(left) - 10 )) $ALL32 --strategies apb
pack_runs
[ "$(left)" -gt 80 ] && ruler_run n-star-x4-32k $(( $(left) - 8 )) $ALL32 --strategies star
pack_runs
[ "$(left)" -gt 60 ] && ruler_run n-balanced-x4-32k $(( $(left) - 8 )) $ALL32 --strategies apb-balanced
pack_runs
[ "$(left)" -gt 50 ] && ruler_run mk-x4-32k $(( $(left) - 6 )) --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 32k --ranks 4 --strategies apb
pack_runs
[ "$(left)" -gt 60 ] && ruler_run n-x4-32k-query $(( $(left) - 5 )) $ALL32 --strategies apb --scorer query
pack_runs
[ "$(left)" -gt 100 ] && ruler_run n-balanced-x8-64k $(( $(left) - 3 )) --tasks all --samples 60 --length 64k --ranks 8 --strategies apb-balanced
pack_runs
cat $RUNS/times.txt
