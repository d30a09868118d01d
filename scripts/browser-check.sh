#!/usr/bin/env bash
# The browser check (scripts/test.sh, step 8): opens every page of the built book (book/) in
# headless Chromium at 1280 x 800 and fails on a console error, a KaTeX font or image that did
# not load, a listing wider than its code pane, or a search that finds nothing; it also writes
# the README screenshot (src/img/readme-page.png) from the same run. See tests/browser/check.mjs.
#
# Installs what it needs when it is missing: Debian's `chromium` (apt-get, as root or with
# password-less sudo) and the pinned playwright-core (npm ci, from tests/browser/package-lock.json).
# Where they cannot be installed (no apt-get, no Node.js, no network), it says so and skips:
# exit 0 with a SKIPPED line, so a machine without a browser can still run the other checks.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  printf '\033[33mbrowser-check SKIPPED: %s\033[0m\n' "$1"
  exit 0
}

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x "$CHROMIUM" ]]; then
  if ! command -v apt-get >/dev/null; then
    skip "no Chromium at $CHROMIUM and no apt-get to install Debian's chromium package"
  fi
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo -n true 2>/dev/null || skip "no Chromium at $CHROMIUM, and installing it needs root"
    sudo=(sudo -n)
  fi
  echo "browser-check: installing Debian's chromium (a minute or two)"
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y -qq chromium >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
    "${sudo[@]}" apt-get install -y -qq chromium >/dev/null 2>&1 ||
      skip "apt-get could not install chromium (no package source reachable?)"
  fi
fi

command -v node >/dev/null || skip "Node.js (node) is not installed; the check runs on Node.js"
if [[ ! -f tests/browser/node_modules/playwright-core/package.json ]] ||
  [[ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]]; then
  command -v npm >/dev/null || skip "npm is not installed (needed once for playwright-core)"
  echo "browser-check: installing playwright-core (npm ci)"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error ||
    skip "npm ci could not install playwright-core (registry unreachable?)"
fi

[[ -f book/index.html ]] || { echo "browser-check: book/ is not built (mdbook build)" >&2; exit 1; }
CHROMIUM="$CHROMIUM" exec node tests/browser/check.mjs book src/img/readme-page.png
