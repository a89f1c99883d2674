#!/usr/bin/env bash
# Makes the three Debian packages from this checkout:
#   lanyard-broker (the broker, its systemd unit, /etc/lanyard/broker.toml),
#   lanyard-agent  (the agent and its systemd user unit),
#   lanyard        (the admin CLI).
#
# Usage:
#   packaging/build-debs.sh                    # release build; .debs in target/debian/
#   packaging/build-debs.sh --out DIR          # .debs in DIR
#   packaging/build-debs.sh --prebuilt BINDIR  # package the binaries already in BINDIR
#                                              # (e.g. target/debug), building nothing
#
# Needs cargo-deb; installs it (`cargo install cargo-deb --locked`) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

out=""
prebuilt=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --prebuilt) prebuilt="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-debs: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! command -v cargo-deb >/dev/null; then
  echo "build-debs: installing cargo-deb" >&2
  cargo install cargo-deb --locked
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"
out="${out:-$target/debian}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
packages=(lanyard-broker lanyard-agent lanyard-cli)
bins=(lanyard-broker lanyard-agent lanyard)

if [ -z "$prebuilt" ]; then
  cargo build --release --locked --bins $(printf -- '-p %s ' "${packages[@]}")
  release="$target/release"
  deb_target="$target"
else
  # cargo-deb takes binaries from TARGET/release/: give it a scratch target
  # dir whose release/ holds the prebuilt ones.
  prebuilt="$(cd "$prebuilt" && pwd)"
  deb_target="$(mktemp -d)"
  trap 'rm -rf "$deb_target"' EXIT
  release="$deb_target/release"
  mkdir -p "$release"
  for bin in "${bins[@]}"; do
    [ -x "$prebuilt/$bin" ] || { echo "build-debs: no $prebuilt/$bin" >&2; exit 1; }
    ln "$prebuilt/$bin" "$release/$bin" 2>/dev/null || cp "$prebuilt/$bin" "$release/$bin"
  done
fi

# Man pages and shell completions, made by the binaries from their own
# command trees, where the assets in each crate's [package.metadata.deb]
# expect them: TARGET/release/lanyard-gen/BIN/.
for bin in "${bins[@]}"; do
  gen="$release/lanyard-gen/$bin"
  rm -rf "$gen"
  mkdir -p "$gen/man" "$gen/completions"
  "$release/$bin" man "$gen/man" >/dev/null
  gzip -9n "$gen/man"/*.1
  for shell in bash zsh fish; do
    "$release/$bin" completions "$shell" > "$gen/completions/$bin.$shell"
  done
done

for package in "${packages[@]}"; do
  # --strip: the release profile keeps line tables for backtraces, which
  # would make the installed broker 90 MB; a package ships the stripped
  # binary. --fast (gzip) for prebuilt test packages, xz otherwise.
  CARGO_TARGET_DIR="$deb_target" cargo deb --locked --no-build --strip ${prebuilt:+--fast} \
    -p "$package" -o "$out"
done
ls -l "$out"/*.deb
