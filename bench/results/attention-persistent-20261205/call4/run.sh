#!/usr/bin/env bash
# Session 24, call 4: hopper against hopper-persistent at 16K and 32K causal, three rounds in alternating order, then
# ncu of the persistent kernel at 16K causal (cycles: is the tensor pipe busier than the plain grid's 79 %?).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
for r in 1 2 3; do
  for v in hopper,hopper-persistent hopper-persistent,hopper; do
    timeout 60 $APB bench kernel attention --variants $v --mask causal --lengths 16k,32k 2>>$OUT/bench.log | grep -E '^\| attention' | sed "s/^/| $r /" | tee -a $OUT/rounds.md
  done
done
PROFILES="pers-c-16k@apb_attention_hopper_persistent@1@1@bench kernel attention --variants hopper-persistent --mask causal --lengths 16k --repeats 1 --warmup-ms 0" \
  NCU_TIMEOUT=120 NCU_LINES=40 timeout 200 bash bench/gpu/profile.sh > $OUT/profile.log 2>&1
echo "profile rc=$?"; grep -E "Elapsed Cycles|SM Active|Compute \(SM\)|Duration|Issue Slots|Grid Size|SM Frequency|L2 Hit" $OUT/ncu-pers-c-16k.txt
