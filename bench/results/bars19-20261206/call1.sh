#!/usr/bin/env bash
# Session 31, call 1 (#19): (1) the GPU cases of f34c52d (best-first selection writes straight into its scratch);
# (2) the layout probe: does the fp8 split-KV decode (68 % of HBM at 128K) stream faster when each block's share of
# the cache is one contiguous run (one KV head over 8x the keys, same bytes)? bf16 the same way as the control.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
source bench/gpu/env.sh
unpack_builds
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
echo "== GPU tests: best first, passing budget"
timeout 200 publish/gpu-tests/Apb.Gpu.Tests --filter "best first,passing budget" --out $OUT/gpu-tests.json > $OUT/gpu-tests.txt 2>&1
echo "exit $?: $(tail -1 $OUT/gpu-tests.txt)"; grep -E "FAIL" $OUT/gpu-tests.txt | head
echo "== decode layout probe, order A"
timeout 200 $APB bench kernel decode --variants split-kv3,split-kv3-onehead,split-kv3-fp8,split-kv3-fp8-onehead --lengths 32k,128k --rounds 3 --out $OUT/probe-a.json > $OUT/probe-a.txt 2>&1
echo "exit $?"; cat $OUT/probe-a.txt | grep -v "^ *$" | tail -25
echo "== order B"
timeout 200 $APB bench kernel decode --variants split-kv3-fp8-onehead,split-kv3-fp8,split-kv3-onehead,split-kv3 --lengths 128k --rounds 3 --out $OUT/probe-b.json > $OUT/probe-b.txt 2>&1
echo "exit $?"; cat $OUT/probe-b.txt | grep -v "^ *$" | tail -15
echo "elapsed $(( $(date +%s) - T0 )) s"
