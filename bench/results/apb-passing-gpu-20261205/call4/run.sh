#!/usr/bin/env bash
# Session 25, call 4: l_p 512 against the default where call 3 did not look: APB x4 at 64K (default l_p 1024), seed 0,
# 60 samples a task; and APB x8 at 64K, default and l_p 512, on other samples (seed 1), since l_p 512 was picked on
# seed 0's.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
mkdir -p $OUT/r
run() { local name=$1; local limit=$2; shift 2; local S=$(date +%s)
  timeout $limit $APB eval ruler --model models/embedded --device cuda "$@" --json $OUT/r/$name.json > $OUT/r/$name.md 2> $OUT/r/$name.log
  echo "$name rc=$? $(( $(date +%s)-S )) s" | tee -a $OUT/r/times.txt; grep -E "\*\*mean" $OUT/r/$name.md; }
run n-apb-x4-64k-lp512 120 --tasks all --samples 60 --length 64k --ranks 4 --strategies apb --passing 512
run s1-apb-x8-64k 130 --tasks all --samples 60 --seed 1 --length 64k --ranks 8 --strategies apb
run s1-apb-x8-64k-lp512 130 --tasks all --samples 60 --seed 1 --length 64k --ranks 8 --strategies apb --passing 512
tar -C $OUT -czf $OUT/r.tgz r && rm -rf $OUT/r
