#!/usr/bin/env bash
# Builds wolfSSL 5.9.4's example client and server (the DTLS 1.3 peers of tests/interop_wolfssl.rs)
# with DTLS 1.2 + DTLS 1.3, PSK, AES-CCM(-8), ChaCha20-Poly1305, RFC 9146 connection IDs, session
# tickets and early data (0-RTT), from the wolfSSL source that the crates.io package
# wolfssl-sys 5.3.0 ships (no other download). About 1-3 minutes on 2 cores.
#
#   scripts/build-wolfssl.sh [DEST]
#
# DEST defaults to $COAPS_PEERS_DIR/wolfssl-5.9.4, else target/peers/wolfssl-5.9.4 in this repo.
# Idempotent: does nothing when both programs are already built there with these options.
# Needs: cargo, a C compiler, make, autoconf, automake, libtool, openssl (see scripts/ci-peers.sh,
# which installs the missing ones on Debian).
#
# The programs must be run from DEST (they read certs/... relative to the current directory), and
# refuse to start without certs/dh2048.pem, which the crate's copy lacks: this script creates it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=5.9.4
CRATE=wolfssl-sys-5.3.0
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

if [ -x "$CLIENT" ] && [ -x "$SERVER" ] && [ -f "$DEST/certs/dh2048.pem" ] &&
  [ "$(cat "$STAMP" 2>/dev/null)" = "$want_stamp" ]; then
  echo "wolfSSL $VERSION examples already built in $DEST"
  exit 0
fi

missing=()
for tool in cargo cc make autoreconf aclocal libtoolize openssl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-wolfssl.sh: missing tools: ${missing[*]} (Debian: apt-get install gcc make autoconf automake libtool openssl)" >&2
  exit 1
fi

if [ ! -f "$DEST/configure.ac" ]; then
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  src=$(ls -d "$cargo_home"/registry/src/*/$CRATE/wolfssl-src 2>/dev/null | head -n 1 || true)
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
  mv "$DEST.partial" "$DEST"
fi

cd "$DEST"
rm -f "$STAMP"
[ -x configure ] || autoreconf -ivf >autoreconf.log 2>&1 || { tail -n 30 autoreconf.log >&2; exit 1; }
./configure "${CONFIGURE_ARGS[@]}" >configure.log 2>&1 || { tail -n 30 configure.log >&2; exit 1; }
# The crate's copy lacks tests/unit.c: build only the library and the two example programs.
make -j"$(nproc)" examples/client/client examples/server/server >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
# The examples refuse to start without certs/dh2048.pem, which the crate's copy strips.
[ -f certs/dh2048.pem ] || openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out certs/dh2048.pem 2>/dev/null
echo "$want_stamp" >"$STAMP"
echo "built: $CLIENT $SERVER (run them from $DEST)"
