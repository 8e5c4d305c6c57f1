#!/usr/bin/env bash
# Session 25, call 3: APB x8 at 64K with l_p 512 (n/128; the default is 896) on the 200 multi-key samples a task and on
# every task at 60 samples; and the two Star cells run 9's table lacks: (8, 32k) and (4, 64k), 60 samples, seed 0.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
mkdir -p $OUT/r
run() { local name=$1; local limit=$2; shift 2; local S=$(date +%s)
  timeout $limit $APB eval ruler --model models/embedded --device cuda "$@" --json $OUT/r/$name.json > $OUT/r/$name.md 2> $OUT/r/$name.log
  echo "$name rc=$? $(( $(date +%s)-S )) s" | tee -a $OUT/r/times.txt; grep -E "\*\*mean" $OUT/r/$name.md; }
run mk-x8-64k-lp512 110 --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 --samples 200 --length 64k --ranks 8 --strategies apb --passing 512
run n-apb-x8-64k-lp512 150 --tasks all --samples 60 --length 64k --ranks 8 --strategies apb --passing 512
run n-star-x8-32k 120 --tasks all --samples 60 --length 32k --ranks 8 --strategies star
run n-star-x4-64k 150 --tasks all --samples 60 --length 64k --ranks 4 --strategies star
tar -C $OUT -czf $OUT/r.tgz r && rm -rf $OUT/r
