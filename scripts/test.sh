#!/usr/bin/env bash
# Runs the whole test suite against the real native stack (slapd, redis, LemonLDAP::NG, our
# server). Installs the native packages first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Every integration test starts its own stack; 2 at a time fit the 2-core reference machine.
exec cargo test --workspace --no-fail-fast -- --test-threads="${MAIL_OIDC_TEST_THREADS:-2}" "$@"
