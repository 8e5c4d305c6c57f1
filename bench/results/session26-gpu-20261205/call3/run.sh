#!/usr/bin/env bash
# Session 26, call 3 (#19, the fp8 decode step): the o_proj prefetch during the decode attention (9d25a96,
# APB_DECODE_PREFETCH=1). First the GPU cases (the bits unchanged with the hint; the v3 decode and fp8 grid as a
# control), then the Llama-3.1-8B decode step at 8K and 128K, bf16 and fp8 caches, with the prefetch off / on
# (evict-last) / on with a plain prefetch (DV3_PF_EVICT_LAST=0), interleaved: off on off on plain.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader | tee $R/gpu.txt
S=$(date +%s)
timeout 150 $GPU_TESTS --filter "prefetch,decode/v3 Tq=1 ,fp8kv/decode v3" --out $R/gpu-tests.json > $R/gpu-tests.log 2>&1
echo "gpu tests rc=$? $(( $(date +%s)-S )) s"; tail -3 $R/gpu-tests.log; grep -i "fail" $R/gpu-tests.log | head -5
dec() { local name=$1; shift; local s=$(date +%s)
  env "$@" timeout 100 $APB bench decode --device cuda --shape llama-3.1-8b --contexts 8k,128k --kv-cache-dtype auto,fp8 \
    --out $R/$name > $R/$name.md 2> $R/$name.log
  echo "$name rc=$? $(( $(date +%s)-s )) s"; grep -E "split-kv( fp8)?:" $R/$name.log | sed "s/^/  /"; tar -C $OUT -czf $OUT/r.tgz r; }
dec off1 APB_DECODE_PREFETCH=0
dec on1 APB_DECODE_PREFETCH=1
dec off2 APB_DECODE_PREFETCH=0
dec on2 APB_DECODE_PREFETCH=1
dec plain1 APB_DECODE_PREFETCH=1 APB_KERNEL_DEFINES=DV3_PF_EVICT_LAST=0
rm -rf $R
