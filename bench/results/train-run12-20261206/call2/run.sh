#!/usr/bin/env bash
# Session 28, call 2 (the machine call 1 left warm, run 12's weights still in /tmp/apb-train/run/model): APB x4 and full
# at 32K, Star x8 at 64K, seed 0's 60 samples a task. Into /tmp/s28/r beside call 1's files; runs.tgz holds them all.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh; unpack_binaries >/dev/null
export RUNS=/tmp/s28/r MODEL=/tmp/apb-train/run/model
[ -f $MODEL/model.safetensors ] || { echo "no run 12 weights on this machine (a fresh one): nothing to measure"; exit 3; }
ruler_run n-x4-32k-apb 75 --tasks all --samples 60 --length 32k --ranks 4 --strategies apb
ruler_run n-full-32k 40 --tasks all --samples 60 --length 32k --strategies full
ruler_run n-star-x8-64k 140 --tasks all --samples 60 --length 64k --ranks 8 --strategies star
pack_runs
cat $RUNS/times.txt
