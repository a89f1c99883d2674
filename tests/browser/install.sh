#!/usr/bin/env bash
# Installs axe-core (the accessibility rules the browser tests run in the
# page, from the npm registry) into a folder outside the clone;
# tests/src/axe.rs loads axe.min.js from there (or from $LANYARD_AXE_JS).
set -euo pipefail
dir="${LANYARD_AXE_DIR:-$HOME/.cache/lanyard-axe-core}"
if [ -f "$dir/node_modules/axe-core/axe.min.js" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "axe: npm missing; the browser tests' accessibility checks will be skipped" >&2
  exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"lanyard-axe-core","private":true}' > "$dir/package.json"
if (cd "$dir" && npm install --no-audit --no-fund --silent axe-core@4); then
  echo "axe: axe-core installed in $dir" >&2
else
  echo "axe: cannot install axe-core from the npm registry; the browser tests' accessibility checks will be skipped" >&2
fi
