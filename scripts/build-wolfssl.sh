#!/usr/bin/env bash
# Builds wolfSSL 5.9.4 from the wolfSSL source that the crates.io package wolfssl-sys 5.3.0 ships
# (no other download), one of two ways:
#
#   scripts/build-wolfssl.sh [DEST]          the interop peers
#   scripts/build-wolfssl.sh --bench DEST    the library the wolfSSL handshake bench links
#
# Peers (the default): wolfSSL's example client and server, the DTLS 1.3 peers of
# tests/interop_wolfssl.rs, with DTLS 1.2 + DTLS 1.3, PSK, AES-CCM(-8), ChaCha20-Poly1305, RFC 9146
# connection IDs, session tickets and early data (0-RTT), built with --enable-debug. About 1-3
# minutes on 2 cores. DEST defaults to $COAPS_PEERS_DIR/wolfssl-5.9.4, else
# target/peers/wolfssl-5.9.4 in this repo. The programs must be run from DEST (they read certs/...
# relative to the current directory), and refuse to start without certs/dh2048.pem, which the
# crate's copy lacks: this script creates it.
#
# Bench (--bench, called by benches/wolfssl/build.rs; fine to run by hand): the static library
# DEST/src/.libs/libwolfssl.a, an optimised build (wolfSSL's own -O2/-Os choice, no
# --enable-debug: the peers' -O0 debug build would be the wrong thing to time). Features: DTLS 1.3,
# PSK, session tickets, AES-GCM, ChaCha20-Poly1305, P-256 through wolfSSL's single-precision
# x86-64/aarch64 assembly (--enable-sp --enable-sp-asm, as the crates.io `wolfssl-sys` crate
# builds it). COAPS_WOLFSSL_BENCH_CONFIGURE adds configure arguments (e.g. --enable-intelasm),
# COAPS_WOLFSSL_BENCH_JOBS sets make's parallelism (default 1).
#
# Source: $COAPS_WOLFSSL_SRC if set, else the crate's copy from cargo's registry (fetched the
# ordinary way if missing). Idempotent: does nothing when DEST already holds a build with these
# options (stamp file). Needs: a C compiler, make, autoconf, automake, libtool (unless the source
# has its configure script), cargo (unless the source is given), and for the peers openssl (see
# scripts/ci-peers.sh, which installs the missing ones on Debian).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=5.9.4
CRATE=wolfssl-sys-5.3.0

MODE=peers
if [ "${1:-}" = --bench ]; then
  MODE=bench
  DEST=$(realpath -m "${2:?usage: build-wolfssl.sh --bench DEST}")
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
  MAKE_TARGETS=(src/libwolfssl.la)
  JOBS=${COAPS_WOLFSSL_BENCH_JOBS:-1}
  TOOLS=(cc make)
  built() { [ -f "$LIB" ]; }
  done_msg="built: $LIB"
  ready_msg="wolfSSL bench library already built: $LIB"
else
  DEST=$(realpath -m "${1:-${COAPS_PEERS_DIR:-$REPO/target/peers}/wolfssl-$VERSION}")
  CLIENT=$DEST/examples/client/client
  SERVER=$DEST/examples/server/server
  CONFIGURE_ARGS=(
    --enable-static --disable-shared --enable-examples --disable-crypttests --disable-benchmark
    --enable-dtls --enable-dtls13 --enable-dtls-mtu --enable-dtls-frag-ch --enable-dtlscid
    --enable-tls13 --enable-psk --enable-aesccm --enable-chacha --enable-poly1305 --enable-aesgcm
    --enable-curve25519 --enable-ecc --enable-session-ticket --enable-earlydata
    --enable-secure-renegotiation --enable-sni --enable-supportedcurves --enable-certgen --enable-debug
    "CFLAGS=-DWOLFSSL_STATIC_PSK -DHAVE_EXTENDED_MASTER"
  )
  STAMP=$DEST/.coaps-build-stamp
  want_stamp="$VERSION ${CONFIGURE_ARGS[*]}"
  # The crate's copy lacks tests/unit.c: build only the library and the two example programs.
  MAKE_TARGETS=(examples/client/client examples/server/server)
  JOBS=$(nproc)
  TOOLS=(cargo cc make autoreconf aclocal libtoolize openssl)
  built() { [ -x "$CLIENT" ] && [ -x "$SERVER" ] && [ -f "$DEST/certs/dh2048.pem" ]; }
  done_msg="built: $CLIENT $SERVER (run them from $DEST)"
  ready_msg="wolfSSL $VERSION examples already built in $DEST"
fi

if built && [ "$(cat "$STAMP" 2>/dev/null)" = "$want_stamp" ]; then
  echo "$ready_msg"
  exit 0
fi

missing=()
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-wolfssl.sh: missing tools: ${missing[*]} (Debian: apt-get install gcc make autoconf automake libtool openssl)" >&2
  exit 1
fi

if [ ! -f "$DEST/configure.ac" ]; then
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  src=${COAPS_WOLFSSL_SRC:-}
  [ -n "$src" ] || src=$(ls -d "$cargo_home"/registry/src/*/$CRATE/wolfssl-src 2>/dev/null | head -n 1 || true)
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if [ -z "$src" ]; then
    crate=$(ls "$cargo_home"/registry/cache/*/$CRATE.crate 2>/dev/null | head -n 1 || true)
    if [ -z "$crate" ]; then
      # Let cargo download the crate into its cache (crates.io only, the ordinary way).
      # (`cargo init` ends the manifest with an empty [dependencies] table.)
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
make -j"$JOBS" "${MAKE_TARGETS[@]}" >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
if [ "$MODE" = peers ]; then
  # The examples refuse to start without certs/dh2048.pem, which the crate's copy strips.
  [ -f certs/dh2048.pem ] || openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out certs/dh2048.pem 2>/dev/null
fi
echo "$want_stamp" >"$STAMP"
echo "$done_msg"
