#!/usr/bin/env bash
# Sets up what is missing, builds Sluice and runs it on embedded defaults:
# HTTP on :8080, everything stored under ./sluice-data. Extra arguments go
# to `sluice serve` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
mkdir -p bin
go build -o bin/sluice ./cmd/sluice
exec bin/sluice serve "$@"
