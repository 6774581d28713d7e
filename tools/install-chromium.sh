#!/usr/bin/env bash
# Installs Chromium from the distribution's packages for the test that reads
# the daemon's status page in a headless browser (cmd/trueup
# TestStatusPageInChromium). Quietly does nothing when chromium is already on
# PATH, or where it cannot install: not root, or no apt-get. That test then
# fails, naming `make testbin`: CI runs it as root, where this installs.
set -euo pipefail
command -v chromium >/dev/null && exit 0
[ "$(id -u)" = 0 ] || exit 0
command -v apt-get >/dev/null || exit 0
echo "installing chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
{ apt-get update && apt-get install -y --no-install-recommends chromium; } >/tmp/trueup-apt-chromium.log 2>&1 ||
  echo "could not install chromium (see /tmp/trueup-apt-chromium.log); the status page test will fail"
