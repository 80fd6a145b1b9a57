#!/usr/bin/env bash
# Builds kube-apiserver and etcd from this module (k8s.io/kubernetes and etcd's
# server module, both from the Go module proxy) into the user's cache directory,
# keyed by version and by this module's go.sum, and prints that directory.
# A second run finds the binaries there and builds nothing.
#
# This module is deliberately not in go.work: requiring k8s.io/kubernetes would
# raise every workspace module's client-go/apimachinery to whatever it needs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.0
GO=${GO:-go}
sum=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12) # contents only: the same key in every checkout
cache=${XDG_CACHE_HOME:-$HOME/.cache}
dir="$cache/avxrm/kubeserver/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-$sum"
if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
major=${KUBE_VERSION#v}; major=${major%%.*}
minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
vpkg=k8s.io/component-base/version
start=$(date +%s)
echo "building kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION into $dir (several minutes on a cold cache)" >&2
cd "$here"
GOWORK=off CGO_ENABLED=0 "$GO" build -buildvcs=false -trimpath -o "$tmp/kube-apiserver" \
  -ldflags "-s -w -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kube-apiserver
GOWORK=off CGO_ENABLED=0 "$GO" build -buildvcs=false -trimpath -o "$tmp/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3
mv "$tmp/kube-apiserver" "$tmp/etcd" "$dir/"
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$dir"
