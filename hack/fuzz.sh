#!/usr/bin/env bash
# Runs every native Go fuzz target of the product briefly.
#
# The budget is a count of inputs per target (-fuzztime 20000x), not a
# duration: with a duration, Go 1.26's fuzz coordinator can report its own
# deadline as "context deadline exceeded" and fail a target that found nothing
# (go.dev/issue/75804, fixed in Go 1.27). A count has no deadline, so a loaded
# machine only makes the run slower. A duration (FUZZTIME=30s) still works.
set -euo pipefail
fuzztime=${1:-20000x}
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "== $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done
done
