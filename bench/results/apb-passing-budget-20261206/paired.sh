#!/usr/bin/env bash
# Every pairing of this folder's README, run from this folder: bash paired.sh > paired.txt (APB=path/to/apb to override)
A=${APB:-apb}
p() { echo "\$ apb eval paired $*"; "$A" eval paired "$@" 2>&1 | grep -v '^note: the files were made differently'; echo; }
R12=../train-run12-20261206
echo "## multi-key at 64K on 8 ranks, 200 samples a task: the budget against run 12's budget-free APB and Star (same samples)"
for b in 512 1024 2048; do
  p $R12/call3/mk-x8-64k.json call2/mk-x8-64k-b$b.json --strategy apb
  p $R12/call3/mk-x8-64k.json call2/mk-x8-64k-b$b.json --strategy star --other-strategy apb
done
p $R12/call3/mk-x8-64k.json call2/mk-x8-64k-b1024.json --strategy full --other-strategy apb
echo "## every task at 64K on 8 ranks, 60 samples a task, B 1024"
p $R12/call1/n-x8-64k.json call2/n-x8-64k-b1024.json --strategy apb
p call3/n-x8-64k-s1.json call3/n-x8-64k-b1024-s1.json --strategy apb
p $R12/call1/n-x8-64k.json call2/n-x8-64k-b1024.json call3/n-x8-64k-s1.json call3/n-x8-64k-b1024-s1.json --strategy apb
p $R12/call1/n-full-64k.json call2/n-x8-64k-b1024.json --strategy full --other-strategy apb
p $R12/call2/n-star-x8-64k.json call2/n-x8-64k-b1024.json --strategy star --other-strategy apb
echo "## 32K on 4 ranks, B 512 (= l_p there)"
p $R12/call2/n-x4-32k-apb.json call3/n-x4-32k-b512.json --strategy apb
p $R12/call2/n-full-32k.json call3/n-x4-32k-b512.json --strategy full --other-strategy apb
p $R12/call4/mk-x4-32k.json call3/mk-x4-32k-b512.json --strategy apb
p $R12/call4/mk-x4-32k.json call3/mk-x4-32k-b512.json --strategy star --other-strategy apb
echo "## balanced APB, multi-key at 64K on 8 ranks, B 1024"
p $R12/call4/mk-x8-64k-balanced.json call3/mk-x8-64k-balanced-b1024.json --strategy apb-balanced
p $R12/call3/mk-x8-64k.json call3/mk-x8-64k-balanced-b1024.json --strategy star --other-strategy apb-balanced
p call2/mk-x8-64k-b1024.json call3/mk-x8-64k-balanced-b1024.json --strategy apb --other-strategy apb-balanced
