#!/usr/bin/env bash
# Installs a program some tests run from the distribution's packages:
# tools/apt-install.sh PROGRAM [PACKAGE]. Quietly does nothing when PROGRAM is
# already on PATH, or where it cannot install: not root, or no apt-get. The
# tests that need it then say so (Prometheus's is skipped, Chromium's fails
# naming `make testbin`); CI runs as root, where this installs.
set -euo pipefail
program=$1
package=${2:-$1}
command -v "$program" >/dev/null && exit 0
[ "$(id -u)" = 0 ] || exit 0
command -v apt-get >/dev/null || exit 0
echo "installing $package (apt-get)"
export DEBIAN_FRONTEND=noninteractive
log=/tmp/trueup-apt-$package.log
{ apt-get update && apt-get install -y --no-install-recommends "$package"; } >"$log" 2>&1 ||
  echo "could not install $package (see $log); the tests that run $program will not pass"
