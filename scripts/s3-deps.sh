#!/usr/bin/env bash
# Builds the S3 server that the s3blob tests run against, versitygw, into
# the tools cache when it is not there yet, and exports VERSITYGW with its
# path. Needs only Go and the module proxy; takes a minute or two the first
# time. Source it (as scripts/test.sh's dependencies may) or run it.
#
# The cache is $SLUICE_TOOLS, else ${XDG_CACHE_HOME:-$HOME/.cache}/sluice-tools,
# the directory internal/blob/s3blob/s3test looks in (and builds into
# itself when this script was not run). Keep the version in step with
# s3test.Version.

s3_deps() {
  local version=v1.8.0
  local tools="${SLUICE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-tools}"
  local bin="$tools/versitygw-$version/versitygw"
  if [ ! -x "$bin" ]; then
    if ! command -v go >/dev/null 2>&1; then
      echo "s3-deps: Go is needed to build versitygw" >&2
      return 1
    fi
    echo "s3-deps: building versitygw $version into $tools..." >&2
    mkdir -p "$tools" || return 1
    local tmp
    tmp=$(mktemp -d "$tools/.build-XXXXXX") || return 1
    if ! (cd "$tmp" && GOBIN="$tmp" GOFLAGS=-buildvcs=false GOWORK=off \
      go install "github.com/versity/versitygw/cmd/versitygw@$version"); then
      rm -rf "$tmp"
      echo "s3-deps: building versitygw $version failed" >&2
      return 1
    fi
    mkdir -p "$(dirname "$bin")" && mv -f "$tmp/versitygw" "$bin"
    rm -rf "$tmp"
  fi
  export VERSITYGW="$bin"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  s3_deps || exit 1
  echo "$VERSITYGW"
else
  s3_deps
fi
