#!/usr/bin/env bash
# Publishes the Native AOT binaries the GPU machine runs (it has no .NET) and packs them for the trip there.
#
#   tools/publish-gpu.sh [NAME]       publish this tree as build NAME (default: the short commit, "-dirty" when the
#                                      tree has changes) and make it the current build
#   tools/publish-gpu.sh --drop NAME  forget build NAME and pack again
#   tools/publish-gpu.sh --pack       pack again what .gpu/builds holds (a build folder copied in by hand, say)
#
# Every build kept under .gpu/builds/NAME/ (apb, Apb.Gpu.Tests) goes into ONE archive, .gpu/builds.tar.xz, with
# .gpu/builds/CURRENT naming the build that bench/gpu/env.sh's unpack_builds installs as publish/linux-x64/apb and
# publish/gpu-tests/Apb.Gpu.Tests (the others land in publish/builds/NAME/). Why one archive: the device tool carries at
# most 64 MiB with the working tree, whose tracked files are ~57 MB; one apb build compresses to ~6 MB and two separate
# ones do not fit, while a second build of a nearby commit adds less to a shared archive (this script's output: session
# 25, 6,584 KiB for one build of both binaries, 7,223 KiB with a second apb; session 27, 6,628 KiB for one build and
# 9,024 KiB with a second of both binaries, 63 of the 64 MiB: drop the older build). Carry ".gpu/builds.tar.xz" (and
# the call's script folder), never all of .gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
builds=.gpu/builds
mkdir -p "$builds"

if [ "${1:-}" = "--pack" ]; then
  :
elif [ "${1:-}" = "--drop" ]; then
  [ -n "${2:-}" ] && [ -d "$builds/$2" ] || { echo "no build '${2:-}' under $builds (have: $(ls "$builds" | grep -v CURRENT | tr '\n' ' '))"; exit 2; }
  rm -rf "${builds:?}/$2"
  [ "$(cat "$builds/CURRENT" 2>/dev/null)" = "$2" ] && rm -f "$builds/CURRENT"
else
  name=${1:-$(git rev-parse --short HEAD)$([ -z "$(git status --porcelain --untracked-files=no)" ] || echo -dirty)}
  case "$name" in */*|.*|CURRENT|"") echo "build name '$name': use letters, digits, - and _"; exit 2;; esac
  dotnet publish src/Apb.Cli -c Release -r linux-x64 -p:PublishAot=true -o publish/linux-x64 > /tmp/publish-apb.log 2>&1 ||
    { tail -20 /tmp/publish-apb.log; exit 1; }
  dotnet publish tests/Apb.Gpu.Tests -c Release -r linux-x64 -p:PublishAot=true -o publish/gpu-tests > /tmp/publish-gpu-tests.log 2>&1 ||
    { tail -20 /tmp/publish-gpu-tests.log; exit 1; }
  mkdir -p "$builds/$name"
  cp publish/linux-x64/apb publish/gpu-tests/Apb.Gpu.Tests "$builds/$name/"
  git rev-parse HEAD > "$builds/$name/commit.txt"
  git status --porcelain --untracked-files=no > "$builds/$name/changes.txt"
  echo "$name" > "$builds/CURRENT"
fi

# -9e: a dictionary larger than two binaries, so a second build is stored as its differences from the first.
tar -C .gpu -cf - builds | xz -9e -T2 > .gpu/builds.tar.xz
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
pack=$(stat -c %s .gpu/builds.tar.xz)
echo "builds: $(ls "$builds" | grep -v CURRENT | tr '\n' ' ')(current: $(cat "$builds/CURRENT" 2>/dev/null || echo none))"
echo ".gpu/builds.tar.xz $((pack / 1024)) KiB; with the tracked files $(( (tracked + pack) / 1048576 )) of the device tool's 64 MiB"
[ $((tracked + pack)) -lt $((62 * 1048576)) ] || echo "warning: close to the 64 MiB the device tool carries; drop a build (--drop NAME)"
