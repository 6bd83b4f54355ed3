#!/usr/bin/env bash
# The end-to-end suite on a real Kubernetes cluster (kind), for machines with a Docker engine.
#
#   tools/kind/e2e.sh                  # build, create, install, test, delete
#   KEEP_CLUSTER=1 tools/kind/e2e.sh   # keep the cluster afterwards (prints its kubeconfig)
#   tools/kind/e2e.sh -k private       # anything after the script name goes to pytest
#
# It builds the image from the Dockerfile, creates a kind cluster (tools/kind/cluster.yaml),
# loads the image into it, installs charts/propylon with tools/kind/values.yaml, applies
# examples/kubernetes/, waits until the gateway serves the example's Stage, then runs
# tests/kind/ (marker "kind") against the cluster. The cluster is deleted on exit, failure
# included, unless KEEP_CLUSTER=1; on failure the state of the cluster and the logs of the
# operator and the proxies are printed first, since they are gone once the cluster is.
#
# Needs: docker (with a running engine), kubectl, helm (3 or 4), python3 with the project's
# test extra installed (pip install -e .[test]). kind is used from PATH, or from
# ~/.cache/propylon/kind-v0.33.0/bin, or built there with `go install` when neither exists.
# Environment: KIND_CLUSTER_NAME (default propylon-e2e), KIND_NODE_IMAGE (a kindest/node image,
# default: kind's own), KEEP_CLUSTER, and KIND, KUBECTL, HELM, PYTHON to pick the binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

readonly KIND_VERSION=v0.33.0
readonly KIND_CACHE="${HOME}/.cache/propylon/kind-${KIND_VERSION}/bin"
readonly CLUSTER="${KIND_CLUSTER_NAME:-propylon-e2e}"
# The image name is also in tools/kind/values.yaml; tests/kind/test_static.py keeps them equal.
readonly IMAGE=propylon:e2e
# The release name is the gateway's name: the proxy Deployment and public Service are "propylon",
# the in-cluster Service "propylon-internal", the operator "propylon-operator".
readonly RELEASE=propylon
readonly NAMESPACE=propylon-system
readonly EXAMPLE_NAMESPACE=demo
KUBECTL="${KUBECTL:-kubectl}"
HELM="${HELM:-helm}"
PYTHON="${PYTHON:-python3}"
KIND="${KIND:-}"

STARTED=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/propylon-kind.XXXXXX")"
export KUBECONFIG="${WORK}/kubeconfig"
CLUSTER_MADE=0

log() { printf '[%s +%3ss] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - STARTED))" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# What a failed run leaves to read: printed before the cluster, and with it the logs, is deleted.
diagnose() {
  log "diagnostics (the cluster is deleted next unless KEEP_CLUSTER=1)"
  local ns
  "$KUBECTL" get nodes -o wide || true
  "$KUBECTL" get pods -A -o wide || true
  "$KUBECTL" get apis.propylon.dev,stages.propylon.dev -A -o wide || true
  for ns in "$NAMESPACE" "$EXAMPLE_NAMESPACE"; do
    "$KUBECTL" -n "$ns" get deployments,services,endpointslices,secrets,leases -o wide || true
    "$KUBECTL" -n "$ns" get events --sort-by=.lastTimestamp || true
  done
  "$KUBECTL" -n "$EXAMPLE_NAMESPACE" get stages.propylon.dev -o yaml || true
  log "operator logs"
  "$KUBECTL" -n "$NAMESPACE" logs "deployment/${RELEASE}-operator" --tail=200 || true
  log "proxy logs"
  "$KUBECTL" -n "$NAMESPACE" logs -l app.kubernetes.io/name=propylon-proxy --prefix --tail=100 || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((CLUSTER_MADE)); then
    if ((rc != 0)); then
      diagnose
    fi
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
      log "KEEP_CLUSTER=1: cluster ${CLUSTER} kept; export KUBECONFIG=${KUBECONFIG}"
      log "delete it with: ${KIND} delete cluster --name ${CLUSTER}"
    else
      log "deleting kind cluster ${CLUSTER}"
      "$KIND" delete cluster --name "$CLUSTER" || log "warning: could not delete cluster ${CLUSTER}"
      rm -rf "$WORK"
    fi
  else
    rm -rf "$WORK"
  fi
  if ((rc == 0)); then
    log "passed"
  else
    log "failed (exit ${rc})"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found ($2)"
}

find_kind() {
  if [ -n "$KIND" ]; then
    need "$KIND" "KIND names it"
  elif command -v kind >/dev/null 2>&1; then
    KIND="$(command -v kind)"
  elif [ -x "${KIND_CACHE}/kind" ]; then
    KIND="${KIND_CACHE}/kind"
  else
    need go "kind is missing; building it needs Go (https://go.dev/dl/), or install kind yourself"
    log "kind not found: go install sigs.k8s.io/kind@${KIND_VERSION} into ${KIND_CACHE}"
    mkdir -p "$KIND_CACHE"
    GOBIN="$KIND_CACHE" CGO_ENABLED=0 go install "sigs.k8s.io/kind@${KIND_VERSION}"
    KIND="${KIND_CACHE}/kind"
  fi
  log "kind: ${KIND} ($("$KIND" version))"
}

# kind load docker-image fails with "content digest ... not found" when Docker's containerd image
# store holds one platform of a multi-platform image (kubernetes-sigs/kind#3795); saving only the
# engine's own platform and loading that archive works there.
load_image() {
  local image=$1 archive rc
  if "$KIND" load docker-image "$image" --name "$CLUSTER"; then
    return 0
  fi
  log "kind load docker-image ${image} failed; retrying with docker image save --platform + kind load image-archive"
  archive="${WORK}/image.tar"
  rc=0
  docker image save --platform "linux/$(docker version --format '{{.Server.Arch}}')" -o "$archive" "$image" &&
    "$KIND" load image-archive "$archive" --name "$CLUSTER" || rc=$?
  rm -f "$archive"
  return "$rc"
}

# --- preflight --------------------------------------------------------------------------------
log "preflight"
need docker "https://docs.docker.com/engine/install/"
docker info >/dev/null 2>&1 || die "docker is installed but its engine does not answer (docker info)"
need "$KUBECTL" "https://kubernetes.io/docs/tasks/tools/"
need "$HELM" "https://helm.sh/docs/intro/install/"
need "$PYTHON" "set PYTHON to a Python 3.11+ with the project installed"
"$PYTHON" -c 'import pytest, yaml' 2>/dev/null || die "${PYTHON} lacks pytest or PyYAML: pip install -e '.[test]'"
find_kind
if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  die "a kind cluster named ${CLUSTER} exists already (a KEEP_CLUSTER=1 run?): ${KIND} delete cluster --name ${CLUSTER}"
fi

# --- image ------------------------------------------------------------------------------------
log "docker build -t ${IMAGE} ."
docker build -t "$IMAGE" "$ROOT"

# --- cluster ----------------------------------------------------------------------------------
log "kind create cluster --name ${CLUSTER} (tools/kind/cluster.yaml)"
create=("$KIND" create cluster --name "$CLUSTER" --config tools/kind/cluster.yaml --kubeconfig "$KUBECONFIG" --wait 180s)
if [ -n "${KIND_NODE_IMAGE:-}" ]; then
  create+=(--image "$KIND_NODE_IMAGE")
fi
# Set first: a create that fails half-way still leaves a node container to delete.
CLUSTER_MADE=1
"${create[@]}"
"$KUBECTL" version

log "kind load docker-image ${IMAGE}"
load_image "$IMAGE"

# The example's echo backend runs on a stock image. Loading it spares the node a pull from Docker
# Hub (rate limits); when that fails the node pulls it itself, so failure here is only a warning.
ECHO_IMAGE="$(sed -n 's/^ *image: *//p' examples/kubernetes/echo-backend.yaml | head -n 1)"
if [ -n "$ECHO_IMAGE" ]; then
  log "preloading the echo backend's image ${ECHO_IMAGE}"
  if ! { docker image inspect "$ECHO_IMAGE" >/dev/null 2>&1 || docker pull -q "$ECHO_IMAGE"; } ||
    ! load_image "$ECHO_IMAGE"; then
    log "warning: could not preload ${ECHO_IMAGE}; the node will pull it"
  fi
fi

# --- Propylon ---------------------------------------------------------------------------------
log "helm install ${RELEASE} charts/propylon -n ${NAMESPACE} -f tools/kind/values.yaml"
"$HELM" install "$RELEASE" charts/propylon --namespace "$NAMESPACE" --create-namespace \
  -f tools/kind/values.yaml --wait --timeout 5m
"$KUBECTL" -n "$NAMESPACE" rollout status "deployment/${RELEASE}-operator" --timeout=180s

log "kubectl apply -f examples/kubernetes/"
"$KUBECTL" apply -f examples/kubernetes/

log "waiting for the operator to create the proxy Deployment ${NAMESPACE}/${RELEASE}"
for _ in $(seq 1 120); do
  if "$KUBECTL" -n "$NAMESPACE" get "deployment/${RELEASE}" >/dev/null 2>&1; then
    break
  fi
  sleep 1
done
"$KUBECTL" -n "$NAMESPACE" get "deployment/${RELEASE}" >/dev/null ||
  die "the operator did not create deployment/${RELEASE} within 120 s"
"$KUBECTL" -n "$NAMESPACE" wait --for=condition=Available "deployment/${RELEASE}" --timeout=300s
log "waiting for the echo backend"
"$KUBECTL" -n "$EXAMPLE_NAMESPACE" rollout status deployment/echo --timeout=300s
log "waiting for Stage ${EXAMPLE_NAMESPACE}/prod to be Ready"
"$KUBECTL" -n "$EXAMPLE_NAMESPACE" wait --for=condition=Ready stages.propylon.dev/prod --timeout=180s
"$KUBECTL" -n "$EXAMPLE_NAMESPACE" get apis.propylon.dev,stages.propylon.dev

# --- tests ------------------------------------------------------------------------------------
log "pytest tests/kind -m kind"
PROPYLON_KIND_KUBECONFIG="$KUBECONFIG" \
  PROPYLON_KIND_KUBECTL="$KUBECTL" \
  PROPYLON_KIND_HELM="$HELM" \
  PROPYLON_KIND_RELEASE="$RELEASE" \
  PROPYLON_KIND_NAMESPACE="$NAMESPACE" \
  "$PYTHON" -m pytest tests/kind -m kind -v -p no:cacheprovider "$@"
