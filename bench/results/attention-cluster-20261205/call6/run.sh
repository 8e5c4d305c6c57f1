#!/usr/bin/env bash
# Session 23, call 6: HOP_CLUSTER=1 (pairs of blocks multicasting K/V) against the committed kernel, same binary:
# ptxas, the 144 attention/ GPU tests and the bench per build, then the causal bench once more in the other order.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name --format=csv,noheader
KERNEL=attention_hopper.cu TEST_FILTER=attention/ TESTS_TIMEOUT=110 BENCH_TIMEOUT=80 PTXAS=hopper \
  BENCH="bench kernel attention --variants hopper --mask both --lengths 16k,32k,128k" VARIANTS="-;HOP_CLUSTER=1" \
  timeout 420 bash bench/gpu/kernel_variants.sh > $OUT/kv.log 2>&1
echo "kernel_variants rc=$?"
APB=publish/linux-x64/apb
for v in HOP_CLUSTER=1 -; do
  d=$v; [ "$v" = - ] && d=
  echo "== again, causal, $v"
  APB_KERNEL_DEFINES="$d" timeout 60 $APB bench kernel attention --variants hopper --mask causal --lengths 16k,64k,128k 2>/dev/null | grep -E '^\| attention' | tee -a $OUT/again.md
done
cat $OUT/variants.md | tail -40
