#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as root):
# Debian packages, the project with its test extra, and the control-plane binaries
# (kube-apiserver, etcd, kubectl, helm) and aws-lambda-rie cached under ~/.cache/propylon/<version>/.
# Safe to re-run: each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

need_apt=()
for pair in wrk:wrk nginx:nginx-light redis-server:redis-server ip:iproute2 openssl:openssl unzip:unzip taskset:util-linux shellcheck:shellcheck chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if ((${#need_apt[@]})); then
  step "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

step "pip install -e .[test,bench]"
python3 -m pip install -q --disable-pip-version-check -e ".[test,bench]"

if [ -x tools/controlplane/build.sh ] || [ -f tools/controlplane/build.sh ]; then
  step "control-plane binaries"
  bash tools/controlplane/build.sh
fi
step "aws-lambda-rie (the Lambda Runtime Interface Emulator, for tests/functions/test_rie.py)"
bash tools/rie/build.sh
step "setup done"
