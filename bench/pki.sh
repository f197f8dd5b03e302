# shellcheck shell=bash
# make_pki DIR [IP]: a test CA (DIR/ca.pem) and a server certificate for IP, default 127.0.0.1
# (DIR/server.pem, DIR/server.key) made with the openssl CLI; P-256, valid for two days. Sourced
# by bench/run.sh, tests/fault/lib.sh and tests/e2e/lib.sh.
make_pki() {
  local dir=$1 ip=${2:-127.0.0.1}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" \
    -out "$dir/ca.pem" -days 2 -subj /CN=twostep-test-ca 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/server.key" -out "$dir/server.csr" -subj /CN=twostep 2>/dev/null
  printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$ip" >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
}
