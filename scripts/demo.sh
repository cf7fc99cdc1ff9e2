#!/usr/bin/env bash
# Starts the demo environment (IdP, LDAP, Redis, mail server) and keeps it up until Ctrl-C.
# Extra arguments go to `mail-oidc up` (e.g. --env-file demo.env).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --quiet
exec target/debug/mail-oidc up "$@"
