#!/usr/bin/env bash
# Runs every Go fuzz target in the module (each `func FuzzXxx(f *testing.F)`
# in a _test.go file, found by grep) for a short time each, one at a time:
# FUZZTIME per target (default 10s), FUZZMINIMIZETIME to shrink what it
# finds (default 10s). Extra arguments go to `go test` (e.g. -parallel 1).
# It stops at the first failure and prints the crasher's path; commit that
# file and it runs as a regression test in every plain `go test`.
# scripts/test.sh (and so CI) runs it after the test suite with 5s per
# target; a longer FUZZTIME suits a nightly run.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-10s}
minimize=${FUZZMINIMIZETIME:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# "dir name" pairs, sorted, from the test files that declare fuzz targets.
mapfile -t targets < <(
  grep -rEo --include='*_test.go' --exclude-dir=testdata --exclude-dir=vendor \
    '^func Fuzz[A-Za-z0-9_]*\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\)' . |
    sed -E 's#^\./((.*)/)?[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\2 \3#; s#^ #. #' | sort -u
)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi

echo "fuzzing ${#targets[@]} targets for $fuzztime each"
for t in "${targets[@]}"; do
  dir=${t% *}
  name=${t#* }
  printf '%-40s ' "$name (./$dir)"
  start=$SECONDS
  ok=false
  for try in 1 2 3; do
    if go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$@" "./$dir" >"$log" 2>&1; then
      ok=true
      break
    fi
    # The Go fuzzer sometimes fails a run at the very end of -fuzztime
    # with a bare "context deadline exceeded" and no input: a race in the
    # toolchain's worker shutdown, not a finding. Run such a target again;
    # anything else is a failure at once.
    if grep -q 'Failing input written to' "$log" || ! grep -q '^    context deadline exceeded$' "$log"; then
      break
    fi
  done
  if $ok; then
    echo "ok ($((SECONDS - start))s)"
    continue
  fi
  echo "FAIL ($((SECONDS - start))s)"
  cat "$log" >&2
  # A new crasher is written under the package's testdata; a committed
  # one that still fails is named as a failing seed corpus entry.
  crasher=$(sed -nE 's#.*Failing input written to (testdata/fuzz/[^ ]+).*#\1#p' "$log" | head -n1)
  if [ -z "$crasher" ]; then
    entry=$(sed -nE "s#^failure while testing seed corpus entry: $name/(.+)\$#\\1#p" "$log" | head -n1)
    if [ -n "$entry" ] && [ -f "$dir/testdata/fuzz/$name/$entry" ]; then
      crasher="testdata/fuzz/$name/$entry"
    fi
  fi
  if [ -n "$crasher" ]; then
    echo "crasher: $dir/$crasher (re-run: go test -run '^$name/${crasher##*/}\$' ./$dir)" >&2
  else
    echo "$name failed without a crasher file (a failing f.Add seed, or a build error): see the output above" >&2
  fi
  exit 1
done
echo "all fuzz targets passed"
