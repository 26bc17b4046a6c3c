#!/usr/bin/env bash
# Prints, from a `cargo test` log, each failing test binary with its failing tests' panic
# messages (the lines from "panicked at" on, a few each), the list of failures, panics of a
# harness-less binary's main thread (the fault suite), and cargo's list of failed targets.
#
# Usage: scripts/test-failures.sh target/test-output.log
set -euo pipefail
awk '
    /^ *Running / { binary = $0; next }
    /^failures:$/ && !inside { inside = 1; print "--- " binary; next }
    inside && /^test result: FAILED/ { print; inside = 0; after = 0; next }
    inside && /^---- .* ----$/ { print; next }
    /panicked at/ && (inside || /^thread .main. /) {
        if (!inside) print "--- " binary
        after = 8
    }
    after > 0 { print; after--; next }
    inside && /^    [^ ]/ { print }
    /^error: .*target.* failed/ { tail = 1 }
    tail { print }
' "$1"
