#!/usr/bin/env bash
# Checks that the default build and the `zenoh` build resolve every crate
# they share with the same features (crates/workspace-hack/Cargo.toml says
# why). Prints each crate whose features differ and fails, so that a zenoh
# update that turns on a new feature is caught here, not as 10 more minutes
# of CI.
#
#   scripts/check-feature-unification.sh [FEATURE]     (default: zenoh)
set -euo pipefail
cd "$(dirname "$0")/.."
feature=${1:-zenoh}

features_of() {
  cargo tree --locked -p vosd "$@" -e normal,build,dev --prefix none -f '{p}|{f}' \
    | sed 's/ (\*)$//' | sort -u
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vosd-unify.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
features_of > "$tmp/default"
features_of --features "$feature" > "$tmp/other"
python3 - "$tmp/default" "$tmp/other" "$feature" <<'PY'
import sys

def load(path):
    crates = {}
    for line in open(path):
        name, _, feats = line.strip().partition("|")
        if name.startswith("vosd "):
            continue
        crates.setdefault(name, set()).update(f for f in feats.split(",") if f)
    return crates

default, other, feature = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
diff = [(k, sorted(other[k] - default[k]), sorted(default[k] - other[k]))
        for k in sorted(default) if k in other and default[k] != other[k]]
for name, more, fewer in diff:
    print(f"{name}: with --features {feature}: +{more} -{fewer}")
if diff:
    sys.exit(f"{len(diff)} shared crate(s) differ: add their features to crates/workspace-hack/Cargo.toml")
print(f"feature unification: the default and --features {feature} builds share all {len(default)} common crates")
PY
