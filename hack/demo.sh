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
  "$bin/trueup" build "$env" --config "$src/trueup.yaml" | head -n 20
  echo "..."
done

export KUBECONFIG=$cluster/kubeconfig
trueup() { "$bin/trueup" "$@" --config "$src/trueup.yaml"; }

step "trueup diff development: everything is new (exit 1 means there are changes)"
trueup diff development || echo "(exit $?)"

step "trueup apply development: server-side apply, then wait until healthy (the migration Job runs first)"
trueup apply development

step "a new commit: development runs 2 replicas at log level warning"
(
  cd "$src"
  sed -i 's/count: 1$/count: 2/; s/value: debug$/value: warning/' overlays/development/kustomization.yaml
  git -c user.name=demo -c user.email=demo@example.com commit --quiet -am "development: 2 replicas, less logging"
  git push --quiet "$repo" main
  git log --oneline -1
)

step "trueup diff development: exactly that change"
trueup diff development || echo "(exit $?)"

step "trueup apply development"
trueup apply development

step "trueup diff development: in sync (exit 0)"
trueup diff development && echo "(exit 0)"

step "trueup run: the daemon keeps every environment in sync"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18080)
sed -i 's/interval: 1m$/interval: 2s/' "$src/trueup.yaml"
"$bin/trueup" run --config "$src/trueup.yaml" --http-addr "127.0.0.1:$port" --cache-dir "$work/cache" >"$work/run.log" 2>&1 &
daemon_pid=$!
status() { "$bin/trueup" status --server "http://127.0.0.1:$port" "$@"; }
synced() { status -o json 2>/dev/null | grep -cE '"status": ?"synced"'; }
for _ in $(seq 1 120); do
  [ "$(synced)" -eq 3 ] && break
  sleep 1
done
status
step "a developer bumps staging's tag: trueup set-image (one commit, only the tag line changes)"
trueup set-image staging shop-api=1.2.1 --push
git -C "$repo" show --format='%h %s' main | sed -n '1p;/^[-+] /p'
wait_for() { # ENV: until the daemon reports ENV synced at the head of main
  local head; head=$(git -C "$repo" rev-parse main)
  for _ in $(seq 1 120); do
    status "$1" -o json 2>/dev/null | grep -qE "\"revision\": ?\"$head\"" &&
      status "$1" -o json 2>/dev/null | grep -qE '"status": ?"synced"' && return
    sleep 1
  done
}
wait_for staging
status
"${kubectl[@]}" -n shop-staging get deployment api -o jsonpath='staging api image: {.spec.template.spec.containers[0].image}{"\n"}'

step "ops promote staging to production: trueup promote (a commit with a Promoted-From trailer)"
trueup promote staging production --push
trueup promote staging production --push   # again: nothing to commit
wait_for production
status
"${kubectl[@]}" -n shop-production get deployment api -o jsonpath='production api image: {.spec.template.spec.containers[0].image}{"\n"}'
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^trueup_sync_status\{.*status="synced"\}' || true
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true

step "look around"
echo "  ${kubectl[*]} -n shop-development get all,configmaps,secrets,pvc"
"${kubectl[@]}" -n shop-development get deployments,statefulsets,jobs,pods
if [ -t 0 ]; then
  echo
  echo "The control plane keeps running for you to explore: export KUBECONFIG=$cluster/kubeconfig"
  echo "Press Enter to stop it."
  read -r
fi
