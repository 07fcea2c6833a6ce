#!/usr/bin/env bash
# Runs the benchmarks behind BENCHMARKS.md and saves their output under
# bench-results/. Each figure there is a ratio or difference against a
# baseline measured in the same run. Needs Node.js and npm for the
# ffmpeg.wasm baseline (apt-get install nodejs npm).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "Node.js and npm are needed for the ffmpeg.wasm baseline: apt-get install nodejs npm" >&2
    exit 1
  fi
fi
(cd bench/ffmpegwasm && npm ci --no-audit --no-fund --silent)
mkdir -p bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
{
  echo "# $(date -u) $(uname -srm) $(nproc) cores; $(go version)"
  echo "# ffmpeg: $(ffmpeg -version | head -n1); node $(node --version)"
  go test -run '^$' -bench 'PipelineOverhead' -benchtime 20x ./internal/server
  go test -run '^$' -bench 'UploadRSS' -benchtime 1x ./cmd/sluice
  go test -run '^$' -bench 'Engines' -benchtime 3x -timeout 60m ./internal/media
  go test -run '^$' -bench 'ThumbnailSeek|Storyboard' -benchtime 5x -timeout 60m ./internal/media
  go test -run '^$' -bench 'HLSLadder' -benchtime 5x -timeout 60m ./internal/media
  go test -run '^$' -bench 'Gateway' -benchtime 5000x ./internal/ai
  go test -run '^$' -bench 'EdgePolicy' -benchtime 3000x ./internal/server
  go test -run '^$' -bench 'Allow' -benchtime 1s ./internal/ratelimit
  go test -run '^$' -bench 'ScaleOut' -benchtime 1x -count 2 ./cmd/sluice
  go test -run '^$' -bench 'WasmColdStart' -benchtime 3x -timeout 60m ./internal/media
  # In its own process: a child's peak RSS starts from its parent's at fork.
  go test -run '^$' -bench 'EdgeRecipe' -benchtime 3x -timeout 60m ./internal/media
} 2>&1 | grep -v -e 'log_test.go' -e 'helpers_test.go' -e 'child:' | tee "bench-results/$stamp.txt"
