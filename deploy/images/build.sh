#!/usr/bin/env bash
# Builds the images offline: static binaries compiled here, FROM scratch
# contexts with the host's CA certificates and tzdata, tagged avxrm/<name>:dev.
# Also avxrm/nats:dev (nats-server from its Go module) and avxrm/busybox:dev
# (Debian's busybox-static, through docker import) for the workers.
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
TAG=${TAG:-dev}
# What the binaries report (--version, GET /version, rm_build_info); make images passes its VERSION.
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
ctx=bin/image-context
rm -rf "$ctx" && mkdir -p "$ctx/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/usr/share" "$ctx/rootfs/tmp" "$ctx/data/db"
cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"
cp -rL /usr/share/zoneinfo "$ctx/rootfs/usr/share/"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
chmod 1777 "$ctx/rootfs/tmp"
cp deploy/images/Dockerfile.offline "$ctx/Dockerfile"

export CGO_ENABLED=0
$GO build -trimpath -ldflags="-s -X github.com/avxrm/rm/pkg/events/buildinfo.version=$VERSION" -o "$ctx/bin/" \
  ./services/api/cmd/rm-api ./services/scheduler/cmd/rm-scheduler \
  ./services/launcher/cmd/rm-launcher ./services/scenario-export/cmd/rm-scenario-export ./cmd/avxrm
# nats-server at the version the project's modules require (from the module proxy).
(cd pkg/events && $GO build -trimpath -ldflags=-s -o "../../$ctx/bin/nats-server" github.com/nats-io/nats-server/v2)

label="--label rm.stack=avxrm --label org.opencontainers.image.version=$VERSION"
build() { # name binary extra-Dockerfile-lines...
  local name=$1 bin=$2; shift 2
  { cat deploy/images/Dockerfile.offline; printf '%s\n' "$@"; } >"$ctx/Dockerfile.$name"
  docker build -q $label -f "$ctx/Dockerfile.$name" -t "avxrm/$name:$TAG" --build-arg BIN="$bin" "$ctx" >/dev/null
  echo "avxrm/$name:$TAG"
}
svc='ENTRYPOINT ["/app"]'
probe='HEALTHCHECK --interval=5s --timeout=6s --retries=6 CMD ["/app", "probe"]'
build api rm-api "$svc" "$probe" 'ENV RM_HTTP_ADDR=:8080' 'EXPOSE 8080'
build scheduler rm-scheduler "$svc" "$probe" 'ENV RM_HTTP_ADDR=:8081'
build launcher rm-launcher "$svc" "$probe" 'ENV RM_HTTP_ADDR=:8082 RM_DATA_DIR=/data'
build scenario-export rm-scenario-export "$svc" "$probe" 'ENV RM_HTTP_ADDR=:8083'
build store avxrm 'ENTRYPOINT ["/app", "store"]' 'HEALTHCHECK --interval=2s --timeout=6s --retries=15 CMD ["/app", "store", "probe"]' \
  'ENV RM_STORE_ADDR=0.0.0.0:27017 RM_DATA_DIR=/data' 'EXPOSE 27017'
build nats nats-server 'ENTRYPOINT ["/app"]' 'CMD ["--jetstream", "--store_dir", "/data"]' 'EXPOSE 4222 8222'

# Workers: busybox-static from Debian, imported as an image with sh and sleep.
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
bb=$(mktemp -d)
trap 'rm -rf "$bb"' EXIT
mkdir -p "$bb/bin" "$bb/tmp"
cp /bin/busybox "$bb/bin/busybox"
for c in $("$bb/bin/busybox" --list); do [ "$c" = busybox ] || ln -s busybox "$bb/bin/$c"; done
tar -C "$bb" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "avxrm/busybox:$TAG" >/dev/null
echo "avxrm/busybox:$TAG"
