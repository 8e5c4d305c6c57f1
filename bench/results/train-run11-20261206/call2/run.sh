#!/usr/bin/env bash
# Session 27, call 2 (three commands on the machine call 1 left warm, run 11's weights still in /tmp/apb-train/run/model;
# joined here as they ran): APB at (8 ranks, 64K) and (4, 32K) with the default l_a / l_p and run 11's retaining heads,
# then Star at (8, 64K), seed 0's 60 samples a task.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh; unpack_binaries >/dev/null; RUNS=$OUT/r; export MODEL=/tmp/apb-train/run/model
ruler_run n-x8-64k 170 --tasks all --samples 60 --length 64k --ranks 8 --strategies apb
ruler_run n-x4-32k-apb 75 --tasks all --samples 60 --length 32k --ranks 4 --strategies apb
ruler_run n-star-x8-64k 140 --tasks all --samples 60 --length 64k --ranks 8 --strategies star
