#!/usr/bin/env bash
# Remakes docs/images/page.png, the README's picture of apb serve's page: the browser test that asks the embedded model
# (APB over 2 CPU ranks) about a 512-token needle document saves the answered page. Needs chromium and chromium-driver
# (apt-get install chromium chromium-driver), as the test does.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/images
APB_PAGE_SCREENSHOT="$(pwd)/docs/images/page.png" APB_BROWSER_TESTS=required \
  dotnet test tests/Apb.Tests -c Release --filter "FullyQualifiedName~PageTests.AnswersAPastedDocument"
echo "wrote docs/images/page.png"
