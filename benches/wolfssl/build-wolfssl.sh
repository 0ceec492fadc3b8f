#!/usr/bin/env bash
# Builds the wolfSSL 5.9.4 static library that the wolfSSL handshake bench links (called by
# build.rs; fine to run by hand):
#
#   benches/wolfssl/build-wolfssl.sh DEST
#
# An optimised build (wolfSSL's own -O2/-Os choice, no --enable-debug), unlike the peers of the
# interop tests (scripts/build-wolfssl.sh builds those with --enable-debug at -O0, which would be
# the wrong thing to time). Features: DTLS 1.3, PSK, session tickets, AES-GCM, ChaCha20-Poly1305,
# P-256 through wolfSSL's single-precision x86-64/aarch64 assembly (--enable-sp --enable-sp-asm,
# as the crates.io `wolfssl-sys` crate builds it). COAPS_WOLFSSL_BENCH_CONFIGURE adds configure
# arguments (e.g. --enable-intelasm).
#
# Source: $COAPS_WOLFSSL_SRC if set, else the wolfSSL source that the crates.io package
# wolfssl-sys 5.3.0 ships (from cargo's registry, fetched the ordinary way if missing).
# Needs a C compiler, make, autoconf, automake, libtool. Idempotent (stamp file).
set -euo pipefail

DEST=$(realpath -m "${1:?usage: build-wolfssl.sh DEST}")
CRATE=wolfssl-sys-5.3.0
CONFIGURE_ARGS=(
  --enable-static --disable-shared --disable-examples --disable-crypttests --disable-benchmark
  --enable-dtls --enable-dtls13 --enable-dtls-mtu --enable-dtls-frag-ch --enable-tls13
  --enable-psk --enable-aesgcm --enable-chacha --enable-poly1305 --enable-ecc
  --enable-session-ticket --enable-sni --enable-supportedcurves --enable-sp --enable-sp-asm
  ${COAPS_WOLFSSL_BENCH_CONFIGURE:-}
  # Rust executables are position independent: the static library must be too.
  "CFLAGS=-fPIC"
)
STAMP=$DEST/.coaps-bench-stamp
want_stamp="${CONFIGURE_ARGS[*]}"
LIB=$DEST/src/.libs/libwolfssl.a

if [ -f "$LIB" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want_stamp" ]; then
  echo "wolfSSL bench library already built: $LIB"
  exit 0
fi

if [ ! -f "$DEST/configure.ac" ]; then
  src=${COAPS_WOLFSSL_SRC:-}
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if [ -z "$src" ]; then
    cargo_home=${CARGO_HOME:-$HOME/.cargo}
    src=$(ls -d "$cargo_home"/registry/src/*/$CRATE/wolfssl-src 2>/dev/null | head -n 1 || true)
  fi
  if [ -z "$src" ]; then
    crate=$(ls "$cargo_home"/registry/cache/*/$CRATE.crate 2>/dev/null | head -n 1 || true)
    if [ -z "$crate" ]; then
      (cd "$tmp" && cargo init -q --vcs none --name fetchwolf &&
        echo 'wolfssl-sys = "=5.3.0"' >>Cargo.toml && cargo fetch -q)
      crate=$(ls "$cargo_home"/registry/cache/*/$CRATE.crate | head -n 1)
    fi
    tar xzf "$crate" -C "$tmp" "$CRATE/wolfssl-src"
    src=$tmp/$CRATE/wolfssl-src
  fi
  mkdir -p "$(dirname "$DEST")"
  rm -rf "$DEST.partial"
  cp -a "$src" "$DEST.partial"
  # A build tree copied from elsewhere must not carry its objects or configuration along.
  (cd "$DEST.partial" && { [ ! -f Makefile ] || make distclean >/dev/null 2>&1 || true; })
  mv "$DEST.partial" "$DEST"
fi

cd "$DEST"
rm -f "$STAMP"
[ -x configure ] || autoreconf -ivf >autoreconf.log 2>&1 || { tail -n 30 autoreconf.log >&2; exit 1; }
./configure "${CONFIGURE_ARGS[@]}" >configure.log 2>&1 || { tail -n 30 configure.log >&2; exit 1; }
make -j"${COAPS_WOLFSSL_BENCH_JOBS:-1}" src/libwolfssl.la >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
echo "$want_stamp" >"$STAMP"
echo "built: $LIB"
