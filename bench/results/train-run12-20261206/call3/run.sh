#!/usr/bin/env bash
# Session 28, call 3 (the machine calls 1-2 left warm, run 12's weights in /tmp/apb-train/run/model), as it ran (one
# command line): multi-key at 64K on 8 ranks, 200 samples a task of seed 0 (the samples of run 9's
# bench/results/apb-multikey-gpu-20261205 files), full / APB / Star in one run.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1; source bench/gpu/env.sh; unpack_binaries >/dev/null
export RUNS=/tmp/s28/r3 MODEL=/tmp/apb-train/run/model; [ -f $MODEL/model.safetensors ] || exit 3
ruler_run mk-x8-64k 300 --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 64k --ranks 8 --strategies full,apb,star
pack_runs; cat $RUNS/times.txt
