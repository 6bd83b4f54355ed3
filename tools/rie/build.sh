#!/usr/bin/env bash
# Build the AWS Lambda Runtime Interface Emulator (the `aws-lambda-rie` binary every AWS Lambda
# base image ships) from the Go module proxy, for the test that runs a handler under it with
# awslambdaric exactly as a Lambda container image does. Idempotent: a binary that exists is kept.
#
#   tools/rie/build.sh                 # into ~/.cache/propylon/rie-<version>/bin
#   PROPYLON_RIE_BIN=/some/dir tools/rie/build.sh
#
# The proxy serves the emulator only as this pseudo-version (its v1.x tags are not served).
set -euo pipefail

RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
BIN=${PROPYLON_RIE_BIN:-$HOME/.cache/propylon/rie-$RIE_VERSION/bin}
mkdir -p "$BIN"
if [ -x "$BIN/aws-lambda-rie" ]; then
    echo "aws-lambda-rie: $BIN/aws-lambda-rie (cached)"
    exit 0
fi
GOBIN="$BIN" CGO_ENABLED=0 go install \
    "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION"
echo "aws-lambda-rie: $BIN/aws-lambda-rie"
