#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 20: the CI smoke run; use
# e.g. 3600 for a long run). Installs cargo-fuzz (from crates.io) if it is missing.
# Prints each target's executions; exits non-zero if any target finds a crash.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz 0.13.2"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
targets=(verifier_bytes verifier_accepts_only_what_loads contract_compiler wire_checker channel_manager)
cargo fuzz build -O
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    log="$(mktemp)"
    if ! cargo fuzz run -O "$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz target $target FAILED (the crashing input is under fuzz/artifacts/$target/)"
        exit 1
    fi
    grep -E "cordon-fuzz:" "$log" | tail -1 || true
    runs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
    echo "$target: ${runs:-?} executions, no crash"
    rm -f "$log"
done
