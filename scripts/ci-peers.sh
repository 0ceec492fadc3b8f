#!/usr/bin/env bash
# Builds the peers that are not Debian packages (today: the wolfSSL 5.9.4 example client and
# server, the only DTLS 1.3 peers available) for tests/interop_wolfssl.rs and
# tests/harness_wolfssl_selftest.rs. Called by .ci/run; fine to run by hand:
#
#   bash scripts/ci-peers.sh
#
# Idempotent: installs the build tools only when missing (Debian, as root or through sudo) and
# skips the build when the programs are already there. Output goes to
# $COAPS_PEERS_DIR/wolfssl-5.9.4, by default target/peers/wolfssl-5.9.4, which is where the tests
# look. About 1-2 minutes from scratch on 2 cores, nothing when already built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
command -v autoreconf >/dev/null || need+=(autoconf)
command -v aclocal >/dev/null || need+=(automake)
command -v libtoolize >/dev/null || need+=(libtool)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "ci-peers.sh: missing build tools (${need[*]}) and no apt-get to install them" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

SECONDS=0
bash scripts/build-wolfssl.sh
echo "wolfSSL peers ready in ${SECONDS}s"
