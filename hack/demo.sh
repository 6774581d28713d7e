#!/usr/bin/env bash
# `make demo`: starts a local control plane, serves examples/ as a git
# repository, and runs trueup on each of its environments.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
work=$(mktemp -d "${TMPDIR:-/tmp}/trueup-demo.XXXXXX")
cluster=$work/cluster

cleanup() {
  [ -n "${cluster_pid:-}" ] && kill "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting a local control plane (etcd, kube-apiserver, controller-manager, scheduler, simulated node)"
mkdir -p "$cluster"
"$bin/localcluster" --dir "$cluster" >"$work/localcluster.log" 2>&1 &
cluster_pid=$!
for _ in $(seq 1 180); do
  [ -s "$cluster/kubeconfig" ] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/localcluster.log"; exit 1; }
  sleep 1
done
[ -s "$cluster/kubeconfig" ] || { echo "control plane did not come up; see $work/localcluster.log"; exit 1; }
kubectl=("$bin/k8s/kubectl" --kubeconfig "$cluster/kubeconfig")
"${kubectl[@]}" version
"${kubectl[@]}" get nodes

step "making a git repository of examples/"
repo=$work/shop.git
git init --quiet --bare --initial-branch=main "$repo"
src=$work/src
cp -r "$root/examples" "$src"
(
  cd "$src"
  export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.com GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.com
  git init --quiet --initial-branch=main
  git add -A
  git commit --quiet -m "shop: initial deployment"
  git push --quiet "$repo" main
  git log --oneline
)
# The example config reads its own directory; point it at the git repository.
sed "s|^    url: \.$|    url: file://$repo|" "$root/examples/trueup.yaml" >"$src/trueup.yaml"
grep -q "file://$repo" "$src/trueup.yaml"

for env in development staging production; do
  step "trueup build $env (fetched from git, Secret values masked)"
  "$bin/trueup" build "$env" --config "$src/trueup.yaml"
done

step "the Secret of development, decrypted in memory (--show-secrets)"
"$bin/trueup" build development --config "$src/trueup.yaml" --show-secrets |
  awk '/^kind: Secret/,/^---/' | grep -A3 '^stringData:' || true

step "done"
echo "The control plane stops when this script exits. Diff and apply come with the next milestone."
