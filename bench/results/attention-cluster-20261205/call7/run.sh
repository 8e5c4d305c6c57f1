#!/usr/bin/env bash
# Session 23, call 7: HOP_CLUSTER=1 with the peer release as CUTLASS's cluster barrier issues it (mbarrier.arrive
# .shared::cluster, the default semantics) instead of .release.cluster, beside the committed kernel.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name --format=csv,noheader
KERNEL=attention_hopper.cu TEST_FILTER=attention/ TESTS_TIMEOUT=110 BENCH_TIMEOUT=80 PTXAS=hopper_d128 \
  BENCH="bench kernel attention --variants hopper --mask both --lengths 16k,32k,128k" VARIANTS="HOP_CLUSTER=1,@.gpu/cb;-" \
  timeout 400 bash bench/gpu/kernel_variants.sh > $OUT/kv.log 2>&1
echo "kernel_variants rc=$?"
grep -v "^Compiling" $OUT/variants.md | tail -24
