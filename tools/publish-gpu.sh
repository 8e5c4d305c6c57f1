#!/usr/bin/env bash
# Publishes the Native AOT binaries the GPU machine runs (it has no .NET) and packs them for the trip there.
#
#   tools/publish-gpu.sh [NAME]       publish this tree as build NAME (default: the short commit, "-dirty" when the
#                                      tree has changes) and make it the current build
#   tools/publish-gpu.sh --drop NAME  forget build NAME and pack again
#   tools/publish-gpu.sh --pack       pack again what .gpu/builds holds (a build folder copied in by hand, say)
#
# Every build kept under .gpu/builds/NAME/ goes into two archives: .gpu/builds.tar.xz holds every build's apb (with
# .gpu/builds/CURRENT naming the build that bench/gpu/env.sh's unpack_builds installs as publish/linux-x64/apb; the
# others land in publish/builds/NAME/), .gpu/gpu-tests.tar.xz every build's Apb.Gpu.Tests (installed the same way as
# publish/gpu-tests/Apb.Gpu.Tests when it is carried). Why several builds share an archive: a second build of a
# nearby commit adds less to a shared one (session 25: 6,584 KiB for one build of both binaries, 7,223 KiB with a
# second apb). Why two archives: the device tool carries at most 64 MiB with the working tree (in practice it refused
# 65.5 MB and took 65.3, session 30); the tracked files are ~57 MB (bench/results' raw GPU test logs gzipped), apb's
# archive ~6.1 MB and the GPU tests' ~1.4 MB: a call that runs no GPU test carries .gpu/builds.tar.xz alone, one that
# does carries .gpu/gpu-tests.tar.xz too, while the total fits (the script prints it). Carry those (and the call's
# script folder), never all of .gpu/.
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
( cd .gpu && find builds -type f ! -name Apb.Gpu.Tests | sort | tar -cf - -T - ) | xz -9e -T2 > .gpu/builds.tar.xz
( cd .gpu && find builds -type f -name Apb.Gpu.Tests | sort | tar -cf - -T - ) | xz -9e -T2 > .gpu/gpu-tests.tar.xz
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
pack=$(stat -c %s .gpu/builds.tar.xz)
tests=$(stat -c %s .gpu/gpu-tests.tar.xz)
limit=$((65300 * 1000))   # the most the device tool took (65.3 MB; it refused 65.5 MB) in session 30
echo "builds: $(ls "$builds" | grep -v CURRENT | tr '\n' ' ')(current: $(cat "$builds/CURRENT" 2>/dev/null || echo none))"
echo ".gpu/builds.tar.xz (apb) $((pack / 1024)) KiB, .gpu/gpu-tests.tar.xz $((tests / 1024)) KiB; tracked files $((tracked / 1000000)) MB"
echo "with apb: $(( (tracked + pack) / 1000000 )) MB; with both: $(( (tracked + pack + tests) / 1000000 )) MB; the device tool took 65.3 MB and refused 65.5"
[ $((tracked + pack)) -lt $limit ] || echo "warning: the tree and apb alone are near what the device tool carries; drop a build (--drop NAME) or shrink the tree"
[ $((tracked + pack + tests)) -lt $limit ] || echo "note: the tree, apb and the GPU tests together may not fit one call: carry gpu-tests.tar.xz only to calls that run GPU tests, with less else"
