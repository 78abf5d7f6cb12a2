#!/bin/sh
# Creates the self-signed certificate nginx serves, once: the compose stack keeps it in a volume, so
# browsers see the same certificate after a restart. An existing certificate is left alone.
# Environment: TLS_DIR (default /etc/nginx/tls), TLS_SUBJECT_ALT_NAMES (default localhost and 127.0.0.1).
set -eu

dir=${TLS_DIR:-/etc/nginx/tls}
names=${TLS_SUBJECT_ALT_NAMES:-DNS:localhost,IP:127.0.0.1}

if [ -s "$dir/tls.crt" ] && [ -s "$dir/tls.key" ]; then
  echo "make-cert: keeping the existing certificate in $dir"
  exit 0
fi

umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
  -subj "/CN=lipsync self-signed" -addext "subjectAltName=$names" \
  -keyout "$dir/tls.key.new" -out "$dir/tls.crt.new" 2>/dev/null
chmod 0644 "$dir/tls.crt.new"
# Key first, certificate last: a present tls.crt means the pair is complete.
mv "$dir/tls.key.new" "$dir/tls.key"
mv "$dir/tls.crt.new" "$dir/tls.crt"
echo "make-cert: created a self-signed certificate for $names in $dir"
