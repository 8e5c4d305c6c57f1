#!/usr/bin/env bash
# Session 23, call 4: attention rates under sustained load (>= ~1.3 s of calls per row, so the median is past the boost
# clock of the first calls): ours (bf16 and QK8) against torch SDPA (FA2, cuDNN) with the same repeats, then ours again.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export APB_KERNEL_SOURCES=.gpu/6296e1c
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
APB=publish/linux-x64/apb
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 50 > $OUT/clocks.csv &
SMI=$!
mark() { echo "MARK $(date +%H:%M:%S.%N | cut -c1-12) $*" >> $OUT/marks.txt; }
ours() { mark "start ours $1 $2"; $APB bench kernel attention --variants hopper,hopper-qk8 --mask causal --lengths $1 --repeats $2 2>>$OUT/bench.log | grep -E '^\| attention' | tee -a $OUT/ours.md; mark end; }
peer() { mark "start sdpa $1 $2"; (cd bench/peers && python3 attention_sdpa.py --lengths $1 --repeats $2 --mask causal 2>>$OUT/peer.log) | grep -E '^\| torch' | tee -a $OUT/peer.md; mark end; }
for p in "16k 400" "64k 40" "128k 10"; do set -- $p; ours $1 $2; peer $1 $2; ours $1 $2; done
ours 16k 20; peer 16k 5
kill $SMI
