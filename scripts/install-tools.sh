#!/usr/bin/env bash
# Installs the book's tools at the pinned versions, with `cargo install --locked`:
#   mdbook 0.5.4        builds and serves the book, tests its snippets (`mdbook test`)
#   mdbook-katex 0.10.0 renders the math at build time (bundled KaTeX 0.16.4)
# Skips a tool that is already there at the right version, so it is quiet and fast when there
# is nothing to do; replaces one found at another version. Binaries go to ~/.cargo/bin.
set -euo pipefail

MDBOOK_VERSION=0.5.4
MDBOOK_KATEX_VERSION=0.10.0

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
  *":$cargo_bin:"*) ;;
  *) export PATH="$cargo_bin:$PATH" ;;
esac

# ensure NAME VERSION: installs crate NAME (binary NAME) at VERSION unless `NAME --version`
# already reports it ("mdbook v0.5.4", "mdbook-katex 0.10.0").
ensure() {
  local name=$1 version=$2 found
  found=$("$cargo_bin/$name" --version 2>/dev/null | awk '{print $2}' || true)
  found=${found#v}
  if [[ "$found" == "$version" ]]; then
    return 0
  fi
  echo "install-tools: installing $name $version (found: ${found:-none}); this takes a few minutes" >&2
  cargo install --locked --force --quiet "$name@$version"
}

ensure mdbook "$MDBOOK_VERSION"
ensure mdbook-katex "$MDBOOK_KATEX_VERSION"
