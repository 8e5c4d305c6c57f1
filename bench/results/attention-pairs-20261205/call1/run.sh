#!/usr/bin/env bash
# Session 24, call 1: the GPU test binary of 39a5068 (pairs entries, CheckPairs, even grids) on every group but decode,
# then decode with what time is left; then the pairs against the plain kernel, one order.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
S=$(date +%s)
timeout 250 publish/gpu-tests/Apb.Gpu.Tests --filter smoke/,models/,passing/,merge/,fp8kv/,ops/,attention/ --out $OUT/gpu-tests-a.json > $OUT/gpu-tests-a.log 2>&1
echo "tests a rc=$? $(( $(date +%s)-S )) s"; tail -1 $OUT/gpu-tests-a.log; grep -i "fail" $OUT/gpu-tests-a.log | head -20
S=$(date +%s)
timeout 170 publish/gpu-tests/Apb.Gpu.Tests --filter decode/ --out $OUT/gpu-tests-b.json > $OUT/gpu-tests-b.log 2>&1
echo "tests b rc=$? $(( $(date +%s)-S )) s"; tail -1 $OUT/gpu-tests-b.log; grep -i "fail" $OUT/gpu-tests-b.log | head -10
S=$(date +%s)
timeout 140 $APB bench kernel attention --variants hopper,hopper-pairs --mask both --lengths 16k,32k,64k,128k --out $OUT/pairs-1.json 2>$OUT/bench.log | grep -E '^\|' | tee $OUT/pairs-1.md
echo "bench rc=$? $(( $(date +%s)-S )) s"
