#!/usr/bin/env bash
# Checks that the `zenoh` test build reuses every unit of the default test
# build (crates/workspace-hack/Cargo.toml says why): each crate compiled by
# `cargo test --profile ci` must be compiled with the same features, on the
# same side (host or target), by `cargo test --profile ci --features zenoh`.
# Otherwise that build compiles the crate again, and all that depends on it
# (tract, after a change in serde on the host side). Prints each unit the
# second build would compile anew and fails, so that a zenoh update that
# turns on a new feature is caught here, not as 10 more minutes of CI.
#
# It reads cargo's unit graph (`--unit-graph`, an unstable flag:
# RUSTC_BOOTSTRAP=1 lets the stable cargo print it; nothing is built).
# `cargo tree` is not enough: it merges a crate's host and target features.
#
#   scripts/check-feature-unification.sh [FEATURE]     (default: zenoh)
set -euo pipefail
cd "$(dirname "$0")/.."
feature=${1:-zenoh}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vosd-unify.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
graph() {
  RUSTC_BOOTSTRAP=1 cargo test --locked --profile ci --no-run -Z unstable-options --unit-graph "$@"
}
graph > "$tmp/default"
graph --features "$feature" > "$tmp/other"
python3 - "$tmp/default" "$tmp/other" "$feature" <<'PY'
import json
import sys

def units(path):
    """Every unit but vosd's own crates: (package, target, mode, features)."""
    with open(path) as f:
        graph = json.load(f)
    return {
        (u["pkg_id"].split("#")[-1], u["target"]["name"], u["mode"], tuple(sorted(u["features"])))
        for u in graph["units"]
        if not u["pkg_id"].split("#")[-1].startswith("vosd")
    }

default, other, feature = units(sys.argv[1]), units(sys.argv[2]), sys.argv[3]
anew = sorted(default - other)
for pkg, target, mode, features in anew:
    print(f"{pkg} ({target}, {mode}): features {list(features)} are not built by --features {feature}")
if anew:
    sys.exit(f"{len(anew)} unit(s) of the default build would be compiled again: "
             "add the features that --features " + feature + " turns on to crates/workspace-hack/Cargo.toml")
print(f"feature unification: --features {feature} reuses all {len(default)} units of the default test build")
PY
