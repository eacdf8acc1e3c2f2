# shellcheck shell=bash
# The stack's own certificate authority and the server certificates it signs, made once per
# stack folder under $STACK_DIR/tls and kept across restarts: clients verify the broker and
# PostgreSQL against ca.crt (hostname checked: every server certificate names localhost and
# 127.0.0.1). Sourced by scripts/stack.

TLS_DIR="" # set by tls_paths
tls_paths() { TLS_DIR=$STACK_DIR/tls; }

# The CA: a 2048-bit RSA key (quick to make on 2 cores), valid ten years.
tls_ensure_ca() {
  tls_paths
  [[ -s $TLS_DIR/ca.crt && -s $TLS_DIR/ca.key ]] && return 0
  command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
  mkdir -p "$TLS_DIR"
  chmod 700 "$TLS_DIR"
  say "tls: making the stack's certificate authority in $(show_path "$TLS_DIR")"
  (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" -subj "/CN=choreo stack CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >/dev/null 2>&1) || die "openssl could not make the stack CA"
  chmod 644 "$TLS_DIR/ca.crt"
}

# tls_server_cert NAME: $TLS_DIR/NAME.crt and NAME.key (mode 600), signed by the stack CA, for
# DNS:localhost and IP:127.0.0.1 (plus DNS:NAME). Made once; kept while the CA is the same.
tls_server_cert() {
  local name=$1 ext
  tls_ensure_ca
  if [[ -s $TLS_DIR/$name.crt && -s $TLS_DIR/$name.key ]] &&
    openssl verify -CAfile "$TLS_DIR/ca.crt" "$TLS_DIR/$name.crt" >/dev/null 2>&1; then
    return 0
  fi
  ext=$(mktemp)
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
    "$name" >"$ext"
  (umask 077 &&
    openssl req -newkey rsa:2048 -nodes -keyout "$TLS_DIR/$name.key" -out "$TLS_DIR/$name.csr" \
      -subj "/CN=$name" >/dev/null 2>&1 &&
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
      -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$TLS_DIR/$name.crt" >/dev/null 2>&1) ||
    {
      rm -f "$ext"
      die "openssl could not sign the $name certificate"
    }
  rm -f "$ext" "$TLS_DIR/$name.csr"
  chmod 644 "$TLS_DIR/$name.crt"
}
