#!/usr/bin/env bash
# Debian's Chromium for the review page's browser tests (driven by playwright's Python client with
# executable_path: playwright's own browser download is never used). Installs it if missing; the
# package lists are refreshed only when the first install attempt fails.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium; then
  apt-get update
  apt-get install -y --no-install-recommends chromium
fi
test -x /usr/bin/chromium || { echo "chromium is not at /usr/bin/chromium" >&2; exit 1; }
