#!/usr/bin/env bash
# Runs the benchmarks behind BENCHMARKS.md and saves their output under
# bench-results/. Each figure there is a ratio or difference against a
# baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
mkdir -p bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
{
  echo "# $(date -u) $(uname -srm) $(nproc) cores; $(go version)"
  echo "# ffmpeg: $(ffmpeg -version | head -n1)"
  go test -run '^$' -bench 'PipelineOverhead' -benchtime 20x ./internal/server
  go test -run '^$' -bench 'UploadRSS' -benchtime 1x ./cmd/sluice
} 2>&1 | grep -v -e 'log_test.go' -e 'child:' | tee "bench-results/$stamp.txt"
