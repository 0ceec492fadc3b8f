#!/usr/bin/env bash
# Fuzz smoke run for CI: builds every cargo-fuzz target in fuzz/ and runs each one for
# FUZZ_SECS seconds (default 10) from its committed seed corpus.
#
# Works on the stable toolchain: `-s none` builds with libFuzzer's coverage instrumentation
# (stable -C flags) but without a sanitizer, which is the only part that needs nightly
# (-Zsanitizer). Run locally with a longer budget: FUZZ_SECS=60 scripts/fuzz-smoke.sh
# Optional arguments: the targets to run (default: all, as `cargo fuzz list` gives them: the 12
# DTLS 1.2 targets, the 7 DTLS 1.3 ones, client_hello13 server_hello13 msgs13 record13 cookie13
# server_endpoint13 client_endpoint13, and coap_layer).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${FUZZ_SECS:-10}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

cargo fuzz build -s none

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
    # A target dropped from fuzz/Cargo.toml would otherwise vanish from CI silently.
    for t in client_hello13 server_hello13 msgs13 record13 cookie13 server_endpoint13 client_endpoint13 coap_layer; do
        printf '%s\n' "${targets[@]}" | grep -qx "$t" || { echo "fuzz target $t missing"; exit 1; }
    done
fi

# Fuzz from a scratch copy so the committed seed corpus stays small and unchanged.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    if [ -d "corpus/$t" ]; then
        cp -r "corpus/$t/." "$work/$t/"
    fi
    start=$SECONDS
    if cargo fuzz run -s none "$t" "$work/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 >"$work/$t.log" 2>&1; then
        runs="$(grep -Eo '^Done [0-9]+ runs' "$work/$t.log" | tail -1 || true)"
        echo "fuzz $t: ok (${runs:-?}, $((SECONDS - start)) s)"
        passed=$((passed + 1))
    else
        echo "fuzz $t: FAILED; last lines of its log:"
        tail -n 60 "$work/$t.log"
        ls -1 "artifacts/$t" 2>/dev/null | sed 's/^/  crash input: fuzz\/artifacts\/'"$t"'\//' || true
        failed=$((failed + 1))
    fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
