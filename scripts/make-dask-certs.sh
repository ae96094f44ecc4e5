#!/usr/bin/env bash
# Certificates for Dask traffic between hosts (docs/operations.md, "TLS between hosts"):
#   scripts/make-dask-certs.sh DIR [DAYS]
# writes DIR/ca.pem (the CA every host trusts), DIR/ca-key.pem (keep it off the hosts),
# and DIR/node.pem + DIR/node-key.pem (a certificate and key, signed by the CA, for
# scheduler, workers and zhuge's scheduler processes alike; Dask checks the signature, not
# host names). Then on every host:
#   export ZHUGE_DASK_TLS_CA=DIR/ca.pem ZHUGE_DASK_TLS_CERT=DIR/node.pem ZHUGE_DASK_TLS_KEY=DIR/node-key.pem
#   dask scheduler --protocol tls --tls-ca-file DIR/ca.pem --tls-cert DIR/node.pem --tls-key DIR/node-key.pem
#   zhuge worker tls://SCHEDULER:8786          zhuge up (ZHUGE_DASK_ADDRESS=tls://SCHEDULER:8786)
set -euo pipefail
dir="${1:?usage: $0 DIR [DAYS]}"
days="${2:-365}"
mkdir -p "$dir"
umask 077
openssl req -x509 -newkey rsa:3072 -nodes -days "$days" -subj "/CN=zhuge dask CA" \
  -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=zhuge dask node" \
  -keyout "$dir/node-key.pem" -out "$dir/node.csr" 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=serverAuth,clientAuth" >"$dir/node.ext"
openssl x509 -req -in "$dir/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
  -CAcreateserial -days "$days" -extfile "$dir/node.ext" -out "$dir/node.pem" 2>/dev/null
rm -f "$dir/node.csr" "$dir/node.ext" "$dir/ca.srl"
chmod 644 "$dir/ca.pem" "$dir/node.pem"
echo "wrote $dir/ca.pem, $dir/node.pem, $dir/node-key.pem (and $dir/ca-key.pem: keep it safe)"
