#!/usr/bin/env bash
# Regenerates the example outputs the book shows: src/output/NAME.txt becomes the stdout of
# `cargo run -p attention --example NAME` for every code/examples/NAME.rs, and output files
# whose example is gone are removed. Review the diff (`git diff src/output`) before committing.
# Same command and profile as tests/tests/example_output.rs, which checks the files are current.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p src/output
cargo build --quiet --profile test -p attention --examples

names=()
for file in code/examples/*.rs code/examples/*/main.rs; do
  [[ -e "$file" ]] || continue
  if [[ "$file" == */main.rs ]]; then
    name=$(basename "$(dirname "$file")")
  else
    name=$(basename "$file" .rs)
  fi
  names+=("$name")
  tmp=$(mktemp)
  if ! cargo run --quiet --profile test -p attention --example "$name" >"$tmp"; then
    rm -f "$tmp"
    echo "update-outputs: example $name failed; src/output/$name.txt left as it was" >&2
    exit 1
  fi
  # Only rewrite a file that changed, so `mdbook serve` does not rebuild for nothing.
  if ! cmp -s "$tmp" "src/output/$name.txt"; then
    cat "$tmp" >"src/output/$name.txt"
    echo "update-outputs: src/output/$name.txt updated"
  fi
  rm -f "$tmp"
done

for file in src/output/*.txt; do
  [[ -e "$file" ]] || continue
  name=$(basename "$file" .txt)
  if [[ ! " ${names[*]} " == *" $name "* ]]; then
    rm -f "$file"
    echo "update-outputs: removed $file (no code/examples/$name.rs)"
  fi
done
