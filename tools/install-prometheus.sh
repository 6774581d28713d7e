#!/usr/bin/env bash
# Installs Prometheus for the test that scrapes a running daemon (cmd/trueup
# TestPrometheusSeesDrift), which is skipped without it.
set -euo pipefail
had=$(command -v prometheus || true)
"$(dirname "$0")/apt-install.sh" prometheus
# The package starts a system service; the tests run their own instance.
if [ -z "$had" ] && command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
