#!/usr/bin/env bash
# Session 24, call 2: the pairs against the plain kernel in the other order, then ncu of the causal kernel at 16K and 64K.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
S=$(date +%s)
timeout 140 $APB bench kernel attention --variants hopper-pairs,hopper --mask both --lengths 16k,32k,64k,128k --out $OUT/pairs-2.json 2>$OUT/bench.log | grep -E '^\|' | tee $OUT/pairs-2.md
echo "bench rc=$? $(( $(date +%s)-S )) s"
PROFILES="attn-c-16k@apb_attention_hopper@1@1@bench kernel attention --variants hopper --mask causal --lengths 16k --repeats 1 --warmup-ms 0;attn-c-64k@apb_attention_hopper@1@1@bench kernel attention --variants hopper --mask causal --lengths 64k --repeats 1 --warmup-ms 0" \
  NCU_TIMEOUT=150 NCU_LINES=60 timeout 330 bash bench/gpu/profile.sh > $OUT/profile.log 2>&1
echo "profile rc=$?"; tail -80 $OUT/summary.md
