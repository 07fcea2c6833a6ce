#!/usr/bin/env bash
# Sets up what is missing and runs Sluice's whole test suite: vet, then
# every package's tests with the race detector, then every fuzz target
# for a few seconds (FUZZTIME, default 5s; FUZZTIME=0 skips them). The
# tests use real FFmpeg, an embedded NATS JetStream server, SQLite,
# PostgreSQL, an S3 server and headless Chromium; nothing is faked but
# remote SaaS APIs. Screenshots of the dashboard land in artifacts/
# (SLUICE_ARTIFACTS moves them). Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
# Headless Chromium for the dashboard's browser test.
source scripts/browser-deps.sh
go vet ./...
unformatted=$(gofmt -l cmd internal)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go test -race -count=1 -timeout 20m "$@" ./...
if [ "${FUZZTIME:-5s}" != "0" ]; then
  FUZZTIME=${FUZZTIME:-5s} FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s} bash scripts/fuzz.sh
fi
