#!/bin/bash
# Negative-test certificates, generated next to the ones from gen-certs.sh (run that first):
#   wrong-host.{crt,key}      signed by the trusted test CA (ca.crt) but valid only for
#                             DNS:wrong.example, so a client that checks the name must refuse it
#                             when it expects `localhost`.
#   other-ca.{crt,key}        a second, unrelated P-256 CA.
#   other-server.{crt,key}    a server certificate for localhost/127.0.0.1 issued by other-ca, so a
#                             client trusting only ca.crt must refuse it although the name matches.
# Keys are PKCS#8 PEM, like the ones from gen-certs.sh.
set -euo pipefail
D=${1:-certs}; mkdir -p "$D"; cd "$D"
[ -f ca.crt ] && [ -f ca.key ] || { echo "run gen-certs.sh $D first" >&2; exit 1; }

leaf() { # name CA-prefix SAN EKU
  local n=$1 ca=$2 san=$3 eku=$4
  openssl ecparam -name prime256v1 -genkey -noout -out "$n.key.sec1"
  openssl pkcs8 -topk8 -nocrypt -in "$n.key.sec1" -out "$n.key"
  openssl req -new -key "$n.key" -subj "/CN=$n" -out "$n.csr"
  printf "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nsubjectAltName=%s\nextendedKeyUsage=%s\n" \
    "$san" "$eku" > "$n.ext"
  openssl x509 -req -in "$n.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 3650 -sha256 \
    -extfile "$n.ext" -out "$n.crt"
}

leaf wrong-host ca "DNS:wrong.example" serverAuth

openssl ecparam -name prime256v1 -genkey -noout -out other-ca.key
openssl req -x509 -new -key other-ca.key -sha256 -days 3650 -subj "/CN=Unrelated P256 CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out other-ca.crt
leaf other-server other-ca "DNS:localhost,IP:127.0.0.1" serverAuth
