#!/usr/bin/env bash
# Session 24, call 5: hopper against hopper-persistent, causal 4K-32K, each length as A B A B A B in one process (the
# first row after start-up reads low whatever it runs: call 4), then B A B A B A.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
A=hopper; B=hopper-persistent
timeout 120 $APB bench kernel attention --variants $A,$B,$A,$B,$A,$B --mask causal --lengths 4k,8k,16k,32k --out $OUT/abab.json 2>>$OUT/bench.log | grep -E '^\| attention' | tee $OUT/abab.md
timeout 120 $APB bench kernel attention --variants $B,$A,$B,$A,$B,$A --mask causal --lengths 4k,8k,16k,32k --out $OUT/baba.json 2>>$OUT/bench.log | grep -E '^\| attention' | tee $OUT/baba.md
timeout 100 $APB bench kernel attention --variants $A,$B,$A,$B --mask none --lengths 8k,16k --out $OUT/abab-full.json 2>>$OUT/bench.log | grep -E '^\| attention' | tee $OUT/abab-full.md
