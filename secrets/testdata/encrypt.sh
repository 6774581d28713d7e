#!/usr/bin/env bash
# Re-creates encrypted/ from plain/ with the sops CLI (v3.13.3) and the keys in
# keys/. Needed only when the fixtures change; the tests never run it.
#   go install github.com/getsops/sops/v3/cmd/sops@v3.13.3
#   GNUPGHOME=$(mktemp -d); gpg --import keys/test.pgp.pub.asc
set -euo pipefail
cd "$(dirname "$0")"
age=age1vz0gc9ntpmscrth6mquyzq8vl837n26pwdwar35epgjsd4qflqus72aw5t
other=age1y57pw2kwfyhje0lytty9d0dtd206sds6ux6eah5h9txvv0jzxamq8h43nj   # a key the tests do not have
pgp=243D39B0849EF02EF5C2C03E11CB9B466E74FDB9
enc() { sops --encrypt "${@:3}" "plain/$1" > "encrypted/$2"; }
enc secret.yaml secret.age.yaml --encrypted-regex '^(data|stringData)$' --age "$age"
enc secret.yaml secret.pgp.yaml --encrypted-regex '^(data|stringData)$' --pgp "$pgp"
enc secret.yaml secret.otherkey.yaml --encrypted-regex '^(data|stringData)$' --age "$other"
enc app.env app.env --age "$age"
enc config.json config.json --age "$age"
enc creds.yaml creds.yaml --age "$age"
