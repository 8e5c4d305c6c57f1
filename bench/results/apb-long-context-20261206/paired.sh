#!/usr/bin/env bash
# Every pairing of this folder's README, run from this folder: bash paired.sh > paired.txt (APB=path/to/apb to override).
# Same seed (0) and samples on both sides of each pair; the files of earlier sessions are named by their paths.
A=${APB:-apb}
p() { echo "\$ apb eval paired $*"; "$A" eval paired "$@" 2>&1 | grep -v '^note: the files were made differently'; echo; }
R12=../train-run12-20261206
BUD=../apb-passing-budget-20261206
# vs STRATEGY_A FILE_A STRATEGY_B FILE_B: B's mean minus A's, sample by sample
vs() { p "$2" "$4" --strategy "$1" --other-strategy "$3"; }
for setting in "64k x8" "64k x4" "32k x4" "32k x8"; do
  set -- $setting; L=$1; R=$2
  echo "## ${L^^}, ${R/x/} ranks, 60 samples a task"
  full=$R12/call1/n-full-64k.json; [ "$L" = 32k ] && full=$R12/call2/n-full-32k.json
  case "$L $R" in
    "64k x8") apb=$BUD/call2/n-x8-64k-b1024.json; star=$R12/call2/n-star-x8-64k.json; query=call2/n-x8-64k-query.json; bal=call1/n-balanced-x8-64k.json ;;
    "64k x4") apb=call2/n-x4-64k.json; star=call2/n-star-x4-64k.json; query=call4/n-x4-64k-query.json; bal=call4/n-balanced-x4-64k.json ;;
    "32k x4") apb=call1/n-x4-32k.json; star=call1/n-star-x4-32k.json; query=call1/n-x4-32k-query.json; bal=call1/n-balanced-x4-32k.json ;;
    "32k x8") apb=call2/n-x8-32k.json; star=call2/n-star-x8-32k.json; query=call3/n-x8-32k-query.json; bal=call3/n-balanced-x8-32k.json ;;
  esac
  vs full $full apb $apb
  vs star $star apb $apb
  # the task groups of issue #20's bar: APB against Star on multi-key, multi-value and vt, and against full on multi-key
  p $star $apb --strategy star --other-strategy apb --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3
  p $full $apb --strategy full --other-strategy apb --tasks niah_multikey_1,niah_multikey_2,niah_multikey_3
  p $star $apb --strategy star --other-strategy apb --tasks niah_multivalue
  p $star $apb --strategy star --other-strategy apb --tasks vt
  vs full $full star $star
  [ -f "$query" ] && { vs full $full apb $query; vs star $star apb $query; vs apb $apb apb $query; }
  [ -f "$bal" ] && { vs full $full apb-balanced $bal; vs star $star apb-balanced $bal; vs apb $apb apb-balanced $bal; }
done
echo "## multi-key, 64K, 8 ranks, 200 samples a task"
vs full $R12/call3/mk-x8-64k.json apb $BUD/call2/mk-x8-64k-b1024.json
vs star $R12/call3/mk-x8-64k.json apb $BUD/call2/mk-x8-64k-b1024.json
vs full $R12/call3/mk-x8-64k.json star $R12/call3/mk-x8-64k.json
vs star $R12/call3/mk-x8-64k.json apb-balanced $BUD/call3/mk-x8-64k-balanced-b1024.json
echo "## multi-key, 32K, 4 ranks, 200 samples a task"
vs full $R12/call4/mk-x4-32k.json apb call1/mk-x4-32k.json
vs star $R12/call4/mk-x4-32k.json apb call1/mk-x4-32k.json
vs full $R12/call4/mk-x4-32k.json star $R12/call4/mk-x4-32k.json
echo "## the default budget (B 1024) at 32K x4 against run 12's budget-free APB on the same samples"
vs apb $R12/call2/n-x4-32k-apb.json apb call1/n-x4-32k.json
vs apb $R12/call4/mk-x4-32k.json apb call1/mk-x4-32k.json
echo "## 32K, 8 ranks, seed 1 (60 samples a task, full and APB in one run), and pooled with seed 0"
vs full call4/n-x8-32k-s1.json apb call4/n-x8-32k-s1.json
p $R12/call2/n-full-32k.json call2/n-x8-32k.json call4/n-x8-32k-s1.json call4/n-x8-32k-s1.json --strategy full --other-strategy apb
