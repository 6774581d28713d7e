#!/usr/bin/env bash
# Runs govulncheck over the product's module (tools/cmd/vulncheck: fails on
# a vulnerable dependency the code reaches, reports the standard library's)
# against a vulnerability database built from golang.org/x/vulndb, a module
# the Go module proxy serves: vuln.go.dev itself may be out of reach (CI
# machines, air gaps). The database is as new as VULNDB; bump it with the
# other dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VULNDB:=v0.0.0-20261105234957-e22db6528018}"
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
osv=$(go mod download -json "golang.org/x/vulndb@${VULNDB}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
go run "golang.org/x/vulndb/cmd/indexdb@${VULNDB}" -vulns "$osv/data/osv" -out "$db/db"
cd tools
go run ./cmd/vulncheck -db "file://$db/db" -C .. ./...
