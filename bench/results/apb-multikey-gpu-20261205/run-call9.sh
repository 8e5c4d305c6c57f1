#!/usr/bin/env bash
# Session 24, call 9: the same 200 samples of the three multi-key tasks at 64K (seed 0) for full attention (one GPU),
# APB x8 with the query-free anchor, and APB x8 with l_p 2048 (the default is 1024 at 64K), to pair with call 7's
# APB and Star.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
unpack_binaries apb:publish/linux-x64/apb
run() { local name=$1; shift; local S=$(date +%s)
  timeout 150 $APB eval ruler --model models/embedded --device cuda --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3 \
    --samples 200 --length 64k "$@" --json $OUT/$name.json > $OUT/$name.md 2> $OUT/$name.log
  echo "$name rc=$? $(( $(date +%s)-S )) s" | tee -a $OUT/times.txt; grep -E "^\| 65536" $OUT/$name.md; }
run mk-full-64k --strategies full
run mk-x8-64k-qfree --ranks 8 --strategies apb --anchor-query false
run mk-x8-64k-lp2k --ranks 8 --strategies apb --passing 2048
