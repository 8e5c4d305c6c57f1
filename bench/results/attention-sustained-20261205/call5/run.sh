#!/usr/bin/env bash
# Session 23, call 5: the kernel bench and the SDPA peer with their new default warm-up (1 s of device time per row),
# ours and cuDNN one after the other, causal 16K/64K/128K and non-causal 128K; ours at 16K with --warmup-ms 0 (the old
# one-call warm-up) beside it. Clocks sampled throughout.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export APB_KERNEL_SOURCES=.gpu/6296e1c
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
APB=publish/linux-x64/apb
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 50 > $OUT/clocks.csv &
SMI=$!
mark() { echo "MARK $(date +%H:%M:%S.%N | cut -c1-12) $*" >> $OUT/marks.txt; }
ours() { mark "start ours $*"; $APB bench kernel attention --variants hopper,hopper-qk8 "$@" 2>>$OUT/bench.log | grep -E '^\| attention' | tee -a $OUT/ours.md; mark end; }
peer() { mark "start sdpa $*"; (cd bench/peers && python3 attention_sdpa.py "$@" 2>>$OUT/peer.log) | grep -E '^\| torch' | tee -a $OUT/peer.md; mark end; }
ours --mask causal --lengths 16k,64k,128k --out $OUT/ours-causal.json
peer --mask causal --lengths 16k,64k,128k --out $OUT/sdpa-causal.json
ours --mask none --lengths 128k
peer --mask none --lengths 128k
sleep 5; ours --mask causal --lengths 16k --warmup-ms 0
kill $SMI
