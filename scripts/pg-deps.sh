#!/usr/bin/env bash
# Checks, and when run as root installs, the PostgreSQL server binaries
# (initdb, postgres) that the tests of the PostgreSQL state store need:
# internal/store/postgres/pgtest starts a throwaway server of its own
# from them, so no cluster needs to be running or configured. On Debian
# they come with the postgresql package, whose postgres system user the
# test server runs as when the tests run as root.
#
# Run it (bash scripts/pg-deps.sh: exits 1 when PostgreSQL is still
# missing) or source it (scripts/deps.sh does: then a missing PostgreSQL
# is a warning, as only those tests need it, and they fail saying so).
# SLUICE_SKIP_PG_DEPS=1 skips it; SLUICE_PG_BIN names the directory of
# initdb and postgres when they are somewhere else.

# pg_deps_found reports whether pgtest will find initdb and postgres.
pg_deps_found() {
  local dir
  for dir in ${SLUICE_PG_BIN:+"$SLUICE_PG_BIN"} /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && return 0
  done
  command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1
}

# pg_deps_user checks that a root test run has a user to run the server
# as: PostgreSQL refuses to run as root.
pg_deps_user() {
  [ "$(id -u)" -ne 0 ] && return 0
  id -u postgres >/dev/null 2>&1 && return 0
  echo "The tests run as root, and PostgreSQL must run as another user: no postgres user exists (Debian's postgresql package creates it)" >&2
  return 1
}

pg_deps() {
  [ "${SLUICE_SKIP_PG_DEPS:-}" = 1 ] && return 0
  if pg_deps_found; then
    pg_deps_user
    return
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing postgresql with apt-get..." >&2
    # Debian's package also creates a main cluster; the tests do not use it.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null ||
      { echo "apt-get install postgresql failed" >&2; return 1; }
    pg_deps_found || { echo "postgresql is installed but initdb and postgres are not in /usr/lib/postgresql/*/bin" >&2; return 1; }
    pg_deps_user
  else
    echo "Missing for the PostgreSQL store's tests: PostgreSQL server binaries (initdb, postgres). Install with: sudo apt-get install -y postgresql" >&2
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  pg_deps
else
  pg_deps || echo "warning: the PostgreSQL store's tests (internal/store/postgres) will fail until the above is installed: bash scripts/pg-deps.sh" >&2
fi
