#!/usr/bin/env bash
# Installs Prometheus from the distribution's packages for the test that
# scrapes a running daemon (cmd/trueup TestPrometheusSeesDrift). Quietly does
# nothing when prometheus is already on PATH, or where it cannot install: not
# root, or no apt-get. That test is then skipped, never failed.
set -euo pipefail
command -v prometheus >/dev/null && exit 0
[ "$(id -u)" = 0 ] || exit 0
command -v apt-get >/dev/null || exit 0
echo "installing prometheus (apt-get)"
export DEBIAN_FRONTEND=noninteractive
{ apt-get update && apt-get install -y --no-install-recommends prometheus; } >/tmp/trueup-apt-prometheus.log 2>&1 ||
  echo "could not install prometheus (see /tmp/trueup-apt-prometheus.log); its test will be skipped"
# The package starts a system service; the tests run their own instance.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
