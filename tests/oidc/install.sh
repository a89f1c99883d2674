#!/usr/bin/env bash
# Installs the test OpenID provider (oidc-provider, from the npm registry)
# into a folder outside the clone; tests/oidc/provider.mjs loads it from there.
set -euo pipefail
dir="${OIDC_PROVIDER_DIR:-$HOME/.cache/lanyard-oidc-provider}"
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "oidc: node/npm missing; the OpenID Connect tests will be skipped" >&2
  exit 0
fi
if [ -f "$dir/node_modules/oidc-provider/package.json" ]; then
  exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"lanyard-oidc-provider","private":true}' > "$dir/package.json"
if (cd "$dir" && npm install --no-audit --no-fund --silent oidc-provider@8); then
  echo "oidc: oidc-provider installed in $dir" >&2
else
  echo "oidc: cannot install oidc-provider from the npm registry; the OpenID Connect tests will be skipped" >&2
fi
