#!/usr/bin/env bash
# Session 25, call 1: the GPU tests on e1da274 (the Hopper producer's loads as shared lambdas, never run on a GPU), every
# group but decode; then APB x8 on the three multi-key tasks at 64K, 200 samples a task (seed 0, the samples of session
# 24's call 7), with passing from layer 1, with a 4096-token anchor and passing from layer 1, and with a 4096-token anchor.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb Apb.Gpu.Tests:publish/gpu-tests/Apb.Gpu.Tests
cat .gpu/commit.txt; sha256sum models/embedded/model.safetensors | tee $OUT/model-sha.txt
S=$(date +%s)
timeout 170 publish/gpu-tests/Apb.Gpu.Tests --filter smoke/,models/,passing/,merge/,fp8kv/,ops/,attention/ --out $OUT/gpu-tests.json > $OUT/gpu-tests.log 2>&1
echo "tests rc=$? $(( $(date +%s)-S )) s"; tail -11 $OUT/gpu-tests.log; grep -i "^fail" $OUT/gpu-tests.log | head
run() { local name=$1; shift; local S=$(date +%s)
  timeout 125 $APB eval ruler --model models/embedded --device cuda --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 \
    --samples 200 --length 64k --ranks 8 --strategies apb "$@" --json $OUT/$name.json > $OUT/$name.md 2> $OUT/$name.log
  echo "$name rc=$? $(( $(date +%s)-S )) s" | tee -a $OUT/times.txt; grep -E "^\| 65536" $OUT/$name.md; tail -n 3 $OUT/$name.log; }
run mk-x8-64k-pfl1 --passing-from-layer 1
run mk-x8-64k-a4k-pfl1 --anchor 4096 --passing-from-layer 1
run mk-x8-64k-a4k --anchor 4096
