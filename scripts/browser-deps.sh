#!/usr/bin/env bash
# Checks, and when run as root installs, the headless Chromium that the
# dashboard's browser tests (internal/server TestDashboard, driven with
# chromedp) run. Only the tests need it; `sluice serve` does not.
#
# Run it (bash scripts/browser-deps.sh: exits 1 when Chromium is still
# missing) or source it (scripts/test.sh does: then a missing Chromium is
# a warning, and the browser test fails saying so). SLUICE_SKIP_BROWSER_DEPS=1
# skips it.

browser_deps_found() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1
}

browser_deps() {
  [ "${SLUICE_SKIP_BROWSER_DEPS:-}" = 1 ] && return 0
  browser_deps_found && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing chromium with apt-get (for the dashboard's browser tests)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
      { echo "apt-get install chromium failed" >&2; return 1; }
    browser_deps_found
  else
    echo "Missing for the dashboard's browser tests: Chromium. Install with: sudo apt-get install -y chromium" >&2
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  browser_deps
else
  browser_deps || echo "warning: the dashboard's browser test (TestDashboard) will fail until Chromium is installed: bash scripts/browser-deps.sh" >&2
fi
