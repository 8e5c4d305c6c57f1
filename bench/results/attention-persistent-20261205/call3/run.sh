#!/usr/bin/env bash
# Session 24, call 3: the persistent grid (binaries of the commit in .gpu/commit.txt): ptxas of the Hopper kernels,
# the attention/ GPU tests, then hopper against hopper-persistent in both orders.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
cat .gpu/commit.txt
KERNEL=attention_hopper.cu TEST_FILTER=attention/ TESTS_TIMEOUT=150 BENCH_TIMEOUT=120 PTXAS=hopper \
  BENCH="bench kernel attention --variants hopper,hopper-persistent --mask both --lengths 16k,32k,64k,128k" VARIANTS="-" \
  timeout 400 bash bench/gpu/kernel_variants.sh > $OUT/kv.log 2>&1
echo "kernel_variants rc=$?"
grep -v "^Compiling" $OUT/variants.md | tail -40
source bench/gpu/env.sh
timeout 120 $APB bench kernel attention --variants hopper-persistent,hopper --mask both --lengths 16k,32k,64k,128k --out $OUT/persistent-2.json 2>$OUT/bench2.log | grep -E '^\|' | tee $OUT/persistent-2.md
