#!/usr/bin/env bash
# Session 25, call 2: APB with passing from layer 1 again on call 1's multi-key samples (call 1's JSON did not come
# back), then on every RULER task at 60 samples (seed 0, the samples of run 9's files) at (8, 64k), (8, 32k), (4, 32k).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
mkdir -p $OUT/r
run() { local name=$1; local limit=$2; shift 2; local S=$(date +%s)
  timeout $limit $APB eval ruler --model models/embedded --device cuda "$@" --json $OUT/r/$name.json > $OUT/r/$name.md 2> $OUT/r/$name.log
  echo "$name rc=$? $(( $(date +%s)-S )) s" | tee -a $OUT/r/times.txt; grep -E "\*\*mean" $OUT/r/$name.md; }
run mk-x8-64k-pfl1 110 --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 64k --ranks 8 --strategies apb --passing-from-layer 1
run n-apb-x8-64k-pfl1 170 --tasks all --samples 60 --length 64k --ranks 8 --strategies apb --passing-from-layer 1
run n-apb-x8-32k-pfl1 180 --tasks all --samples 60 --length 32k --ranks 8 --strategies apb --passing-from-layer 1
run n-apb-x4-32k-pfl1 100 --tasks all --samples 60 --length 32k --ranks 4 --strategies apb --passing-from-layer 1
tar -C $OUT -czf $OUT/r.tgz r && rm -rf $OUT/r
