#!/usr/bin/env bash
# Every pairing of this folder's README, run from this folder: bash paired.sh > paired.txt (APB=path/to/apb to override)
A=${APB:-apb}
p() { echo "\$ apb eval paired $*"; "$A" eval paired "$@" 2>&1 | grep -v '^note: the files were made differently'; echo; }
R9=../train-run9-20261205; R11=../train-run11-20261206; P=../apb-passing-gpu-20261205/call3; M=../apb-multikey-gpu-20261205
echo "## run 12 against run 9 and run 11, 60 samples a task"
p $R9/call3/n-x4-64k.json call1/n-full-64k.json --strategy full
p $R11/call1/n-full-64k.json call1/n-full-64k.json --strategy full
p $R9/call3/n-x4-32k.json call2/n-full-32k.json --strategy full
p $R11/call1/n-full-32k.json call2/n-full-32k.json --strategy full
p $P/n-apb-x8-64k-lp512.json call1/n-x8-64k.json --strategy apb
p $R11/call2/n-x8-64k.json call1/n-x8-64k.json --strategy apb
p $R9/call3/n-x4-32k.json call2/n-x4-32k-apb.json --strategy apb
p $R11/call2/n-x4-32k-apb.json call2/n-x4-32k-apb.json --strategy apb
p $R9/call4/n-star-x8-64k.json call2/n-star-x8-64k.json --strategy star
echo "## strategies on run 12, 60 samples a task"
p call1/n-full-64k.json call1/n-x8-64k.json --strategy full --other-strategy apb
p call2/n-star-x8-64k.json call1/n-x8-64k.json --strategy star --other-strategy apb
p call2/n-full-32k.json call2/n-x4-32k-apb.json --strategy full --other-strategy apb
echo "## multi-key, 200 samples a task"
p call3/mk-x8-64k.json call3/mk-x8-64k.json --strategy full --other-strategy apb
p call3/mk-x8-64k.json call3/mk-x8-64k.json --strategy star --other-strategy apb
p call3/mk-x8-64k.json call3/mk-x8-64k.json --strategy full --other-strategy star
p call3/mk-x8-64k.json call4/mk-x8-64k-balanced.json --strategy apb --other-strategy apb-balanced
p call3/mk-x8-64k.json call4/mk-x8-64k-balanced.json --strategy star --other-strategy apb-balanced
p call4/mk-x4-32k.json call4/mk-x4-32k.json --strategy full --other-strategy apb
p call4/mk-x4-32k.json call4/mk-x4-32k.json --strategy star --other-strategy apb
p $M/mk-full-64k.json call3/mk-x8-64k.json --strategy full
p $P/mk-x8-64k-lp512.json call3/mk-x8-64k.json --strategy apb
p $M/mk-x8-64k.json call3/mk-x8-64k.json --strategy star
