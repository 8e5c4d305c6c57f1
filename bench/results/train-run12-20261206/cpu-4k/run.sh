#!/usr/bin/env bash
# Run 12 against run 9 at 4K on the CPU (below the lengths run 12 trained at), the same 20 samples a task, 4 ranks; on
# the 2-core dev machine, Native AOT apb of 5313c42, run 12 unpacked from call 1's pack to .gpu/run12/model and run 9
# (models/embedded before run 12 shipped) copied to /tmp/run9/model. run12's 1282 s ran beside another 4K run.
A=${APB:-apb}
for m in run12:.gpu/run12/model run9:/tmp/run9/model; do
  n=${m%%:*}; M=${m#*:}; s=$(date +%s)
  $A eval ruler --model $M --device cpu --tasks all --samples 20 --length 4k --ranks 4 --strategies full,apb --json $n-4k.json > $n-4k.md 2> $n-4k.log
  echo "$n rc=$? $(( $(date +%s) - s )) s" >> times.txt
done
for s in full apb; do $A eval paired run9-4k.json run12-4k.json --strategy $s; done > paired.txt
