#!/usr/bin/env bash
# Peak RSS of the server under the issue-13 JMAP memory attack: a ~2.2 MB Email/query whose
# filter ORs 100,000 `subject` conditions, sent ROUNDS times, CONCURRENT at once. Prints the
# server's RSS before, its peak (VmHWM) and its RSS after, in KiB, plus the HTTP statuses seen.
# With `echo` as 4th argument the request is instead the largest one the default caps accept:
# Core/echo of 9,990 one-member objects (just under jmap.max_request_values = 20000).
# Usage: scripts/jmap-rss.sh [path/to/mail-oidc-server] [rounds] [concurrent] [filter|echo]
set -euo pipefail
BIN=${1:-target/debug/mail-oidc-server}
ROUNDS=${2:-5}
CONCURRENT=${3:-4}
KIND=${4:-filter}
DIR=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat >"$DIR/users.toml" <<'U'
[[user]]
name = "alice@example.com"
password = "secret"
U
cat >"$DIR/server.toml" <<C
[http]
listen = "127.0.0.1:0"
[http.auth]
strategies = ["basic"]
[directory]
kind = "static"
path = "$DIR/users.toml"
C
"$BIN" --config "$DIR/server.toml" >"$DIR/log" 2>&1 &
PID=$!
# The bound port is in the "listening" log line.
for _ in $(seq 1 200); do
  PORT=$(grep -o 'http: Some(127.0.0.1:[0-9]*)' "$DIR/log" | grep -o '[0-9]*)$' | tr -d ')' || true)
  [ -n "${PORT:-}" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$DIR/log"; echo "server did not start" >&2; exit 1; }
python3 - "$DIR/req.json" "$KIND" <<'PY'
import json, sys
acc = "ACCOUNT"
conds = [{"subject": "x%05d" % i} for i in range(100000)]
req = {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
       "methodCalls": [["Email/query", {"accountId": acc,
                        "filter": {"operator": "OR", "conditions": conds}}, "q"]]}
if sys.argv[2] == "echo":
    req = {"using": ["urn:ietf:params:jmap:core"],
           "methodCalls": [["Core/echo", {"list": [{"subject": "x%05d" % i}
                                                  for i in range(9990)]}, "e"]]}
open(sys.argv[1], "w").write(json.dumps(req))
PY
ACC=$(curl -s -u alice@example.com:secret "http://127.0.0.1:$PORT/.well-known/jmap" \
  | python3 -c 'import json,sys; print(list(json.load(sys.stdin)["accounts"])[0])')
sed -i "s/ACCOUNT/$ACC/" "$DIR/req.json"
rss() { awk -v k="$1:" '$1==k {print $2}' "/proc/$PID/status"; }
echo "request bytes: $(stat -c %s "$DIR/req.json")"
echo "rss before: $(rss VmRSS) KiB"
for r in $(seq 1 "$ROUNDS"); do
  pids=()
  for c in $(seq 1 "$CONCURRENT"); do
    curl -s -o /dev/null -w '%{http_code} ' -u alice@example.com:secret \
      -H 'Content-Type: application/json' --data-binary "@$DIR/req.json" \
      "http://127.0.0.1:$PORT/jmap" &
    pids+=($!)
  done
  wait "${pids[@]}"
  echo "round $r: rss $(rss VmRSS) KiB"
done
echo "peak rss (VmHWM): $(rss VmHWM) KiB"
echo "rss after: $(rss VmRSS) KiB"
