#!/usr/bin/env bash
# Checks, and when run as root installs, what Sluice needs besides Go:
# FFmpeg (ffmpeg, ffprobe), prlimit (util-linux) for the FFmpeg sandbox,
# and the DejaVu fonts that text watermarks draw with.
# Sourced by scripts/serve.sh and scripts/test.sh.
set -euo pipefail

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "Go is not installed: get Go 1.26 or newer from https://go.dev/dl/" >&2
    exit 1
  fi
  local want have
  want=$(awk '/^go /{print $2; exit}' "$(dirname "${BASH_SOURCE[0]}")/../go.mod")
  have=$(go env GOVERSION | sed 's/^go//')
  if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
    echo "Go $have is older than the $want go.mod asks for; GOTOOLCHAIN=auto fetches it when the proxy is reachable." >&2
  fi
}

need_packages() {
  local missing=()
  command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
  command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
  command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
  command -v curl >/dev/null 2>&1 || missing+=(curl) # a plain S3 client for the direct-upload test
  [ "${#missing[@]}" -eq 0 ] && return 0
  # unique
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${missing[*]} with apt-get..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Missing: ${missing[*]}. Install with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

need_go
need_packages

# The local AI providers (Tesseract, the nsfwjs sidecar): optional, so a
# failure here is a warning (SLUICE_SKIP_AI_DEPS=1 skips it).
source "$(dirname "${BASH_SOURCE[0]}")/ai-deps.sh"

# The PostgreSQL server binaries the tests of the PostgreSQL state store
# start a throwaway server from (SLUICE_SKIP_PG_DEPS=1 skips it).
source "$(dirname "${BASH_SOURCE[0]}")/pg-deps.sh"
# versitygw, the S3 server the S3 bucket's tests run against, built from
# its Go module into a cache (the tests also build it when missing).
source "$(dirname "${BASH_SOURCE[0]}")/s3-deps.sh"
