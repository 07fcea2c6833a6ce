#!/usr/bin/env bash
# Checks, and where it can installs, what Sluice's local AI providers need:
#   - OCR: tesseract with English data (Debian tesseract-ocr, tesseract-ocr-eng);
#   - image moderation and classification: Node.js 18 or newer and npm, and
#     the nsfwjs sidecar's node modules (npm ci in internal/ai/nsfwjs, from
#     its package-lock.json; nsfwjs ships its model weights, so nothing is
#     downloaded at run time).
# As root it installs missing Debian packages with apt-get; Node and npm only
# when both are absent (a Node from elsewhere, e.g. NodeSource, conflicts with
# Debian's npm). It runs npm ci when node_modules is missing or was installed
# from another package-lock.json.
#
# Run it (bash scripts/ai-deps.sh: exits 1 when something is still missing)
# or source it (scripts/deps.sh does: then what is missing is a warning, as
# Sluice runs without these providers and reports them unavailable).
# SLUICE_SKIP_AI_DEPS=1 skips it.

ai_deps_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}

ai_deps_node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' >/dev/null 2>&1
}

# ai_deps_packages installs (as root) or names the Debian packages missing.
ai_deps_packages() {
  local missing=() langs=""
  if command -v tesseract >/dev/null 2>&1; then
    langs=$(tesseract --list-langs 2>/dev/null || true)
    grep -qx eng <<<"$langs" || missing+=(tesseract-ocr-eng)
  else
    missing+=(tesseract-ocr tesseract-ocr-eng)
  fi
  if ! command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
  fi
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${missing[*]} with apt-get..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { echo "apt-get install ${missing[*]} failed" >&2; return 1; }
  else
    echo "Missing for the local AI providers: ${missing[*]}. Install with: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

# ai_deps_node checks Node and npm, which ai_deps_packages installs only
# when both are absent.
ai_deps_node() {
  if ! command -v node >/dev/null 2>&1; then
    command -v npm >/dev/null 2>&1 &&
      echo "node is missing (npm is there): install Node.js 18 or newer from the same source as npm" >&2
    return 1
  fi
  if ! ai_deps_node_ok; then
    echo "Node.js $(node --version) is too old for the nsfwjs sidecar: install Node.js 18 or newer" >&2
    return 1
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is missing (node $(node --version) is there): install the npm that goes with this Node (Debian's npm package would replace a Node from elsewhere)" >&2
    return 1
  fi
}

# ai_deps_sidecar runs npm ci in internal/ai/nsfwjs unless node_modules
# was installed from the current package-lock.json.
ai_deps_sidecar() {
  local dir stamp want have
  dir="$(ai_deps_root)/internal/ai/nsfwjs"
  stamp="$dir/node_modules/.sluice-package-lock.sha256"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  have=$(cat "$stamp" 2>/dev/null || true)
  if [ "$want" = "$have" ] && [ -e "$dir/node_modules/nsfwjs/package.json" ]; then
    return 0
  fi
  echo "Installing the nsfwjs sidecar's node modules (npm ci in internal/ai/nsfwjs)..." >&2
  # No install scripts: every module is JavaScript or WebAssembly.
  (cd "$dir" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
    { echo "npm ci in $dir failed" >&2; return 1; }
  echo "$want" >"$stamp"
}

ai_deps() {
  [ "${SLUICE_SKIP_AI_DEPS:-}" = 1 ] && return 0
  local ok=0
  ai_deps_packages || ok=1
  if ai_deps_node; then
    ai_deps_sidecar || ok=1
  else
    ok=1
  fi
  return "$ok"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ai_deps
else
  ai_deps || echo "warning: the local AI providers (tesseract, nsfwjs) will report themselves unavailable until the above is installed: bash scripts/ai-deps.sh" >&2
fi
