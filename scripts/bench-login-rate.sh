#!/usr/bin/env bash
# IMAP login rate of mail-oidc-server and of a throwaway Dovecot 2.3, side by side: one tool
# (`mail-oidc bench --imap`), one token, both servers validating it locally. Then the server's
# memory per idle authenticated connection (--hold).
#
#   cargo build --release -p mail-oidc-server -p mail-oidc-harness
#   scripts/bench-login-rate.sh [--duration S] [--concurrency 1,8,32] [--hold N]
#                               [--dovecot-auth-cache SIZE] [--skip-dovecot]
#
# Needs openssl, python3 (a JWKS file server and the token's JSON) and, for the comparison,
# dovecot-imapd (`apt-get install -y dovecot-imapd`; its own service is not used). Everything
# runs from a temporary directory on loopback ports and is stopped on exit, by PID.
# PIN_SERVERS=0 PIN_CLIENT=1 pin the servers and the load generator to those CPUs (taskset).
# DOVECOT_IMAP_SERVICE_COUNT / DOVECOT_IMAP_MIN_AVAIL tune Dovecot's imap processes (defaults 1
# and 0, Dovecot's own: a new imap process per login); DOVECOT_DEBUG=yes logs its auth steps;
# KEEP=1 keeps the work dir (configs, logs). SERVER_BIN=path measures another build of our
# server (a before/after); TOKEN_CACHE_SECONDS=0 turns its validated-token cache off.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release}"
# The server measured (e.g. an older build, for a before/after); the load generator is $BIN's.
SERVER_BIN="${SERVER_BIN:-$BIN/mail-oidc-server}"
DURATION=10
CONCURRENCY=1,8,32
HOLD=10000
AUTH_CACHE=0
SKIP_DOVECOT=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --concurrency) CONCURRENCY="$2"; shift 2 ;;
        --hold) HOLD="$2"; shift 2 ;;
        --dovecot-auth-cache) AUTH_CACHE="$2"; shift 2 ;;
        --skip-dovecot) SKIP_DOVECOT=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for b in "$SERVER_BIN" "$BIN/mail-oidc"; do
    [ -x "$b" ] || { echo "$b missing: cargo build --release first" >&2; exit 2; }
done

pin() { # pin CPUS CMD...: run CMD on CPUS when set (exec: `(pin ...) &` gives $! = CMD's PID)
    local cpus="$1"; shift
    if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

WORK="$(mktemp -d /tmp/mail-oidc-bench.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
echo "work dir: $WORK"

# The issuer: an RSA key, its JWKS served over HTTP, and one token for bench@example.com, valid
# for two hours. `typ` is JWT (Dovecot 2.3 refuses at+jwt) and `aud` a string (Dovecot 2.3.19's
# auth process crashes with signal 11 on an array).
USER=bench@example.com
KID=bench-1
JWKS_PORT="$(free_port)"
ISSUER="http://127.0.0.1:$JWKS_PORT"
openssl genrsa -traditional -out "$WORK/key.pem" 2048 2>/dev/null
openssl rsa -in "$WORK/key.pem" -pubout -out "$WORK/pub.pem" 2>/dev/null
mkdir -p "$WORK/www"
N="$(openssl rsa -in "$WORK/key.pem" -noout -modulus | cut -d= -f2 | xxd -r -p | b64url)"
printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"%s","n":"%s","e":"AQAB"}]}' \
    "$KID" "$N" > "$WORK/www/jwks"
NOW="$(date +%s)"
HEADER="$(printf '{"alg":"RS256","typ":"JWT","kid":"%s"}' "$KID" | b64url)"
CLAIMS="$(printf '{"iss":"%s","sub":"bench","aud":"mail","iat":%d,"nbf":%d,"exp":%d,"sid":"bench-sid","email":"%s","scope":"openid email"}' \
    "$ISSUER" "$NOW" "$((NOW - 5))" "$((NOW + 7200))" "$USER" | b64url)"
SIG="$(printf '%s.%s' "$HEADER" "$CLAIMS" | openssl dgst -sha256 -sign "$WORK/key.pem" | b64url)"
printf '%s.%s.%s' "$HEADER" "$CLAIMS" "$SIG" > "$WORK/token"
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$JWKS_PORT" \
    > "$WORK/jwks.log" 2>&1 &
PIDS+=($!)

# mail-oidc-server: plain IMAP, static directory, deny-list in memory, defaults otherwise.
printf '[[user]]\nname = "%s"\npassword = "unused-%s"\n' "$USER" "$RANDOM$RANDOM" > "$WORK/users.toml"
cat > "$WORK/server.toml" <<EOF
[directory]
kind = "static"
path = "$WORK/users.toml"
[imap]
listen = "127.0.0.1:0"
allow_plaintext_auth = true
[oidc]
issuer = "$ISSUER"
jwks_url = "$ISSUER/jwks"
audience = ["mail"]
${TOKEN_CACHE_SECONDS:+token_cache_seconds = $TOKEN_CACHE_SECONDS}
[server]
log = "warn"
EOF
# `--hold` keeps up to 10,000 connections from one address: above the default caps. (Leave
# this out with NO_LIMITS=1 for a SERVER_BIN built before [limits] existed.)
if [ -z "${NO_LIMITS:-}" ]; then
    printf '[limits.imap]\nmax_connections = 20000\nmax_connections_per_address = 20000\n' \
        >> "$WORK/server.toml"
fi
ulimit -n "$(ulimit -Hn)"
(pin "${PIN_SERVERS:-}" "$SERVER_BIN" --config "$WORK/server.toml" \
    --ready-file "$WORK/ready.json" > "$WORK/server.log" 2>&1) &
SERVER_PID=$!
PIDS+=($SERVER_PID)
for _ in $(seq 100); do [ -s "$WORK/ready.json" ] && break; sleep 0.1; done
OURS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["imap"])' "$WORK/ready.json")"

bench() { # bench ADDR ARGS...
    local addr="$1"; shift
    (pin "${PIN_CLIENT:-}" "$BIN/mail-oidc" bench --imap "$addr" --user "$USER" \
        --token-file "$WORK/token" "$@")
}

echo "== mail-oidc-server $OURS"
bench "$OURS" --concurrency "$CONCURRENCY" --duration "$DURATION"
bench "$OURS" --mechanism xoauth2 --concurrency "$CONCURRENCY" --duration "$DURATION"

if [ "$SKIP_DOVECOT" = 0 ]; then
    # Dovecot 2.3: oauth2 passdb validating the same JWT locally (key file per azp/alg/kid),
    # login processes reused (high-performance mode), its own base_dir; not the system service.
    DOVECOT_PORT="$(free_port)"
    mkdir -p "$WORK/dovecot/keys/default/RS256" "$WORK/dovecot/run" "$WORK/dovecot/home"
    cp "$WORK/pub.pem" "$WORK/dovecot/keys/default/RS256/$KID"
    # Dovecot's auth process runs unprivileged: it must reach the (public) key file.
    chmod 711 "$WORK"
    chmod -R a+rX "$WORK/dovecot"
    chown nobody "$WORK/dovecot/home"
    cat > "$WORK/dovecot/oauth2.conf.ext" <<EOF
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$WORK/dovecot/keys/
issuers = $ISSUER
username_attribute = email
debug = ${DOVECOT_DEBUG:-no}
EOF
    cat > "$WORK/dovecot/dovecot.conf" <<EOF
base_dir = $WORK/dovecot/run
state_dir = $WORK/dovecot/state
log_path = $WORK/dovecot/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = oauthbearer xoauth2
auth_cache_size = $AUTH_CACHE
auth_debug = ${DOVECOT_DEBUG:-no}
default_client_limit = 20000
default_process_limit = 2000
first_valid_uid = 1
mail_location = maildir:~/Maildir
# One user logs in from one address many times at once (the default 10 refuses the 11th).
protocol imap {
  mail_max_userip_connections = 100000
}
passdb {
  driver = oauth2
  mechanisms = oauthbearer xoauth2
  args = $WORK/dovecot/oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$WORK/dovecot/home/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DOVECOT_PORT
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
}
service imap {
  service_count = ${DOVECOT_IMAP_SERVICE_COUNT:-1}
  process_min_avail = ${DOVECOT_IMAP_MIN_AVAIL:-0}
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF
    (pin "${PIN_SERVERS:-}" dovecot -F -c "$WORK/dovecot/dovecot.conf" > "$WORK/dovecot/stdout.log" 2>&1) &
    PIDS+=($!)
    for _ in $(seq 100); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' \
            "$DOVECOT_PORT" 2>/dev/null && break
        sleep 0.1
    done
    echo "== Dovecot $(dovecot --version) 127.0.0.1:$DOVECOT_PORT (auth_cache_size = $AUTH_CACHE)"
    bench "127.0.0.1:$DOVECOT_PORT" --concurrency "$CONCURRENCY" --duration "$DURATION" \
        || { echo "Dovecot log:"; tail -20 "$WORK/dovecot/dovecot.log"; }
fi

if [ "$HOLD" -gt 0 ]; then
    echo "== mail-oidc-server: $HOLD idle authenticated connections"
    bench "$OURS" --hold "$HOLD" --server-pid "$SERVER_PID"
fi
