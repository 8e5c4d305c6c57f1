#!/usr/bin/env bash
# Session 28, call 4 (the same warm machine), as it ran: balanced APB on call 3's samples, then multi-key at 32K on 4
# ranks, 200 samples a task, full / APB / Star.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1; source bench/gpu/env.sh; unpack_binaries >/dev/null
export RUNS=/tmp/s28/r4 MODEL=/tmp/apb-train/run/model; [ -f $MODEL/model.safetensors ] || exit 3
ruler_run mk-x8-64k-balanced 90 --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 64k --ranks 8 --strategies apb-balanced; pack_runs
ruler_run mk-x4-32k 95 --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 32k --ranks 4 --strategies full,apb,star; pack_runs
cat $RUNS/times.txt
