#!/usr/bin/env bash
# Session 26, call 2 (#20): balanced APB with the new default against --passing 1024 at 64K x4; l_p 256 against the
# default 512 at 32K: 8 ranks again with seed 1 (full attention beside it), 4 ranks with seed 0 (paired with run 9's
# file, which this build reproduces bit for bit: call 1's 32K x8 default run equals run 9's).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries
RUNS=$OUT/r; mkdir -p $RUNS
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader | tee $RUNS/gpu.txt
ruler_run bal-x4-64k 110 --tasks all --samples 60 --length 64k --ranks 4 --strategies apb-balanced
ruler_run bal-x4-64k-p1024 110 --tasks all --samples 60 --length 64k --ranks 4 --strategies apb-balanced --passing 1024
pack_runs
ruler_run s1-x8-32k 120 --tasks all --samples 60 --length 32k --ranks 8 --strategies full,apb --seed 1
ruler_run s1-apb-x8-32k-p256 100 --tasks all --samples 60 --length 32k --ranks 8 --strategies apb --passing 256 --seed 1
pack_runs
ruler_run apb-x4-32k-p256 100 --tasks all --samples 60 --length 32k --ranks 4 --strategies apb --passing 256
pack_runs
cat $RUNS/times.txt
rm -rf $RUNS
