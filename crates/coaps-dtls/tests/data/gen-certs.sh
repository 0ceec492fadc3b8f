#!/bin/bash
# Generate a P-256 (prime256v1) ECDSA CA + server + client certs in certs
# (Copy of the interop peers' recipe, shared/peers/gen-certs.sh; used by src/cert/tests.rs.)
set -e
D=${1:-certs}; mkdir -p "$D"; cd "$D"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=Test P256 CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
for n in server client; do
  openssl ecparam -name prime256v1 -genkey -noout -out $n.key.sec1
  openssl pkcs8 -topk8 -nocrypt -in $n.key.sec1 -out $n.key     # PKCS#8 PEM
  openssl req -new -key $n.key -subj "/CN=$n" -out $n.csr
  printf "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\n" \
     $([ $n = server ] && echo serverAuth || echo clientAuth) > $n.ext
  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 -extfile $n.ext -out $n.crt
  cat $n.crt $n.key > $n.pem          # combined cert+key (libcoap -c accepts this)
  openssl ec -in $n.key -outform DER -out $n.key.der 2>/dev/null
  openssl x509 -in $n.crt -outform DER -out $n.crt.der
done
openssl x509 -in ca.crt -outform DER -out ca.crt.der
ls -l
