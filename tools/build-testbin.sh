#!/usr/bin/env bash
# Builds the local control plane from Go modules (no downloads of prebuilt
# binaries): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl into DIR (default bin/k8s), and localcluster beside DIR. Binaries
# that exist are kept, so a second run costs nothing.
#   usage: tools/build-testbin.sh [DIR]
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
out=${1:-$tools/../bin/k8s}
mkdir -p "$out"
out=$(cd "$out" && pwd)
k8s_version=v1.35.4
# The server and kubectl report v1.35.4 rather than v0.0.0-master.
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=35 -X $pkg.gitTreeState=clean"
done

build() { # name package [dir]
  local name=$1 pkg=$2 dest=${3:-$out}
  if [ -x "$dest/$name" ]; then return; fi
  echo "building $name"
  (cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$dest/$name.tmp" "$pkg")
  mv "$dest/$name.tmp" "$dest/$name"
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubectl k8s.io/kubernetes/cmd/kubectl
# localcluster is ours and changes with the repo: always rebuild (it is quick).
rm -f "$out/../localcluster"
build localcluster ./cmd/localcluster "$(dirname "$out")"
