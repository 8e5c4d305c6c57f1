#!/usr/bin/env bash
# Session 24, call 6: hopper against hopper-persistent at 64K and 128K causal (A B A B, then B A B A), then the
# one-GPU prefill of the 8B shape with the plain grid and with APB_ATTENTION_PERSISTENT=1 in turn (32K x2 each,
# 128K once each), and the APB critical path at 8 ranks (blocks of 16K) both ways.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
A=hopper; B=hopper-persistent
timeout 90 $APB bench kernel attention --variants $A,$B,$A,$B --mask causal --lengths 64k,128k --out $OUT/abab-long.json 2>>$OUT/bench.log | grep -E '^\| attention' | tee $OUT/long.md
timeout 90 $APB bench kernel attention --variants $B,$A,$B,$A --mask causal --lengths 64k,128k 2>>$OUT/bench.log | grep -E '^\| attention' | tee -a $OUT/long.md
pre() { # $1 = 0 or 1 (APB_ATTENTION_PERSISTENT), $2 = lengths, $3 = repeats
  APB_ATTENTION_PERSISTENT=$1 timeout 150 $APB bench prefill --device cuda --shape llama-3.1-8b --strategies full --lengths $2 \
    --warmup 1 --repeats $3 --no-profile --out $WORK/p$1 -q 2>>$OUT/bench.log | grep -E '^\|' | sed "s/^/| persistent=$1 /" | tee -a $OUT/prefill.md
}
WORK=/tmp/w; mkdir -p $WORK
pre 0 32k 3; pre 1 32k 3; pre 0 32k 3; pre 1 32k 3
pre 0 128k 1; pre 1 128k 1
for p in 0 1; do
  APB_ATTENTION_PERSISTENT=$p timeout 120 $APB bench kernel critical-path --lengths 8 2>>$OUT/bench.log | grep -E '^\|' | sed "s/^/| persistent=$p /" | tee -a $OUT/critical.md
done
