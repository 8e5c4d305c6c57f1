#!/usr/bin/env bash
# This folder's charts, run from this folder: bash charts.sh (needs the .NET SDK; src/Apb.Charts). Every APB column ran
# with a passing budget of 1024 (2 l_p): the 64K x8 "apb" file of session 29 named it by hand (its legend says so), the
# files of this session ran the build whose default it is, so their legends do not name it.
R12=../train-run12-20261206 BUD=../apb-passing-budget-20261206
c() { dotnet run -c Release --project ../../../src/Apb.Charts -- ruler "$@"; }
c --json $R12/call1/n-full-64k.json --json $R12/call2/n-star-x8-64k.json --json $BUD/call2/n-x8-64k-b1024.json \
  --json call2/n-x8-64k-query.json --json call1/n-balanced-x8-64k.json --out 64k-x8.png
c --json $R12/call1/n-full-64k.json --json call2/n-star-x4-64k.json --json call2/n-x4-64k.json \
  --json call4/n-x4-64k-query.json --json call4/n-balanced-x4-64k.json --out 64k-x4.png
c --json $R12/call2/n-full-32k.json --json call1/n-star-x4-32k.json --json call1/n-x4-32k.json \
  --json call1/n-x4-32k-query.json --json call1/n-balanced-x4-32k.json --out 32k-x4.png
c --json $R12/call2/n-full-32k.json --json call2/n-star-x8-32k.json --json call2/n-x8-32k.json \
  --json call3/n-x8-32k-query.json --json call3/n-balanced-x8-32k.json --out 32k-x8.png
