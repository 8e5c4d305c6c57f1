#!/usr/bin/env bash
# Session 25, call 5: what the new default l_p (n/128) saves on APB's critical path at 128K on 8 ranks: the same
# harness from e1da274 (l_p 2048, the paper's n/64) and from the working tree with the new default (l_p 1024), twice
# each, interleaved.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source bench/gpu/env.sh
mkdir -p publish/both && xz -dc .gpu/s25/both.tar.xz | tar -C publish/both -xf - && chmod +x publish/both/*/apb
mkdir -p $OUT/r
for i in 1 2; do for b in old new; do
  bin=publish/both/$b/apb
  S=$(date +%s)
  timeout 100 $bin bench kernel critical-path --lengths 8 --out $OUT/r/critical-$b-$i.json 2> $OUT/r/log-$b-$i.txt | grep -E '^\|' | sed "s/^/| $b $i /" >> $OUT/r/critical.md
  echo "$b $i rc=$? $(( $(date +%s)-S )) s"; grep -E "critical path|apb  |modeled|balanced /" $OUT/r/log-$b-$i.txt
  tar -C $OUT -czf $OUT/r.tgz r
done; done
rm -rf $OUT/r
