#!/usr/bin/env bash
# Tests everything: the companion crate, the book's snippets and includes, the example outputs,
# and the built book. CI runs exactly this (.ci/run).
#
#   1. cargo fmt --all --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo test --workspace    the crate's tests, and tests/ (book-tests): skeptic compiles and
#                                runs every Rust block of the chapters, includes and anchors are
#                                checked, example outputs compared with src/output/*.txt
#   4. cargo doc                 rustdoc with -D warnings: no broken doc link
#   5. mdbook build              fails on any ERROR (e.g. a missing include) or KaTeX
#                                "Rendering failed", both of which mdbook lets through (exit 0)
#   6. mdbook test               rustdoc over the chapters, against the companion crate built
#                                in target/mdbook-deps
#   7. check-html                links, #fragments, CDN references, KaTeX errors, CSS font
#                                urls in book/
#   8. browser check             every page in headless Chromium at 1280 px: no console
#                                error, KaTeX fonts and images loaded, no listing wider
#                                than its pane, search works; rewrites the README screenshot
#                                (scripts/browser-check.sh; installs Chromium when missing)
#
# All steps run even when one fails; the summary lists the failures and the exit code is 1.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-tools.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# mdbook test only takes -L folders, so the companion crate and its dependencies get a target
# folder of their own, holding exactly one build of each crate (two would be E0464, "multiple
# candidates"; the main target/ holds several, clippy's .rmeta files included).
MDBOOK_DEPS="target/mdbook-deps"

failed=()
summary=()

# step NAME COMMAND...: runs a step under a banner and records its result and duration.
# (Functions run as a step have errexit off, being on the left of `||`: they check each
# command themselves.)
step() {
  local name=$1
  shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  local start=$SECONDS status=0
  "$@" || status=$?
  local took=$((SECONDS - start))
  if [[ $status -eq 0 ]]; then
    summary+=("  ok      ${took}s  $name")
  else
    summary+=("  FAILED  ${took}s  $name")
    failed+=("$name")
    printf '\033[31m==> %s failed\033[0m\n' "$name"
  fi
}

# Runs mdbook with the given arguments, shows its log, and fails if mdbook fails or logs an
# ERROR or a KaTeX "Rendering failed" (mdbook exits 0 after both).
mdbook_checked() {
  local log status=0
  log=$(mdbook "$@" 2>&1) || status=$?
  printf '%s\n' "$log"
  local bad
  bad=$(grep -E 'ERROR|Rendering failed' <<<"$log" || true)
  if [[ -n "$bad" ]]; then
    printf '\n\033[31mmdbook %s logged errors:\033[0m\n%s\n' "$1" "$bad"
    return 1
  fi
  return "$status"
}

# Builds the companion crate for `mdbook test` and makes sure no crate is there twice
# (a changed Cargo.lock leaves the old builds behind: then start that folder afresh).
build_mdbook_deps() {
  cargo build --quiet -p attention --lib --target-dir "$MDBOOK_DEPS" || return 1
  local dups
  dups=$(duplicate_rlibs)
  if [[ -n "$dups" ]]; then
    echo "several builds of: $dups; rebuilding $MDBOOK_DEPS from scratch"
    cargo clean --quiet --target-dir "$MDBOOK_DEPS"
    cargo build --quiet -p attention --lib --target-dir "$MDBOOK_DEPS" || return 1
    dups=$(duplicate_rlibs)
    if [[ -n "$dups" ]]; then
      echo "still several builds of: $dups (mdbook test may fail with E0464)" >&2
    fi
  fi
}

# The crates a snippet can name (`extern crate …`): the companion crate and its direct
# dependencies, those with more than one rlib in $MDBOOK_DEPS/debug/deps. (Other crates may
# legitimately be there twice, e.g. `syn` built with two feature sets for two proc macros.)
duplicate_rlibs() {
  local crate count
  for crate in $(cargo tree --quiet -p attention -e normal --depth 1 --prefix none --format '{lib}' | sort -u); do
    count=$(find "$MDBOOK_DEPS/debug/deps" -maxdepth 1 -name "lib$crate-*.rlib" | wc -l)
    if [[ $count -gt 1 ]]; then
      printf '%s ' "$crate"
    fi
  done
}

mdbook_test() {
  build_mdbook_deps || return 1
  mdbook_checked test -L "$MDBOOK_DEPS/debug/deps"
}

step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy -D warnings" cargo clippy --quiet --workspace --all-targets -- -D warnings
step "cargo test (crate, snippets, includes, outputs)" cargo test --quiet --workspace --no-fail-fast
# Every public item is documented (missing_docs, in clippy above) and no doc link is broken.
step "cargo doc -D warnings" env RUSTDOCFLAGS="-D warnings" cargo doc --quiet --workspace --no-deps
step "mdbook build" mdbook_checked build
step "mdbook test" mdbook_test
# `--profile test` reuses what `cargo test` has just built (same profile) instead of
# compiling the checker and its dependencies a second time.
step "check-html (links, fragments, CDN, KaTeX)" \
  cargo run --quiet --profile test -p book-tests --bin check-html -- book
step "browser check (Chromium, 1280 px)" ./scripts/browser-check.sh

printf '\n\033[1m==> Summary\033[0m\n'
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  printf '\033[31mFAILED: %d of %d steps failed: %s\033[0m\n' \
    "${#failed[@]}" "${#summary[@]}" "$(IFS=,; echo "${failed[*]}")"
  exit 1
fi
printf '\033[32mOK: all %d steps passed in %ds\033[0m\n' "${#summary[@]}" "$SECONDS"
