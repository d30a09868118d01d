#!/usr/bin/env bash
# Serves the book at http://localhost:3000 and rebuilds it when a chapter or the companion
# crate's code changes. Extra arguments go to `mdbook serve`, e.g. `--open` or `-p 8000`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-tools.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
exec mdbook serve "$@"
