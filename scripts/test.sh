#!/usr/bin/env bash
# The whole test suite: lint, then every test of the workspace, including the tests
# against real PostgreSQL and S3 (Ceph RADOS Gateway) servers, which this script
# installs if missing, starts on 127.0.0.1 and stops again (also on failure).
# CI runs exactly this through .ci/run.
#
# Set PROFILESTORE_TEST_POSTGRES_URL and PROFILESTORE_TEST_S3_* yourself to test
# against servers you run; then nothing is installed or started.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed (https://rustup.rs)" >&2
  exit 2
fi

services=""
stop_services() {
  [ -n "$services" ] || return 0
  scripts/services/s3.sh stop "$services/s3" || true
  scripts/services/postgres.sh stop "$services/pg" || true
  rm -rf "$services" 2>/dev/null || true
}
trap stop_services EXIT

# Import KEY=VALUE lines a service script printed.
import_env() {
  local line
  while IFS= read -r line; do
    case "$line" in PROFILESTORE_TEST_*=*) export "${line?}" ;; esac
  done
}

echo "== build"
cargo build --workspace --all-targets --locked

# Servers start after the build: on two cores a parallel build can starve them.
start_service() { # name script
  local name=$1 script=$2 attempt
  for attempt in 1 2; do
    if "$script" start "$services/$name" >"$services/$name.env" 2>"$services/$name.err"; then
      import_env <"$services/$name.env"
      return 0
    fi
    echo "warning: the $name test server did not start (attempt $attempt):" >&2
    cat "$services/$name.err" >&2
    "$script" stop "$services/$name" >/dev/null 2>&1 || true
    rm -rf "${services:?}/$name"
  done
  echo "error: could not start the $name test server; tests that need it cannot run" >&2
  exit 1
}
if [ -z "${PROFILESTORE_TEST_POSTGRES_URL:-}" ] || [ -z "${PROFILESTORE_TEST_S3_ENDPOINT:-}" ]; then
  services=$(mktemp -d "${TMPDIR:-/tmp}/profilestore-services.XXXXXX")
  chmod 755 "$services" # the postgres user must reach its data directory
  echo "== starting PostgreSQL and S3 under $services"
  [ -n "${PROFILESTORE_TEST_POSTGRES_URL:-}" ] || start_service pg scripts/services/postgres.sh
  [ -n "${PROFILESTORE_TEST_S3_ENDPOINT:-}" ] || start_service s3 scripts/services/s3.sh
fi
# The clock tests shift processes' wall clocks with libfaketime (Debian's faketime).
if ! ( . scripts/services/common.sh && ensure_packages faketime faketime ); then
  echo "error: could not install faketime; the clock tests cannot run" >&2
  exit 1
fi
# The alert rules under deploy/ are checked with promtool (Debian's prometheus).
if ! ( . scripts/services/common.sh && ensure_packages promtool prometheus ); then
  echo "error: could not install prometheus (promtool); the deploy tests cannot run" >&2
  exit 1
fi
# The status page is tested in headless Chromium over WebDriver.
if ! ( . scripts/services/common.sh && ensure_packages chromedriver chromium chromium-driver fonts-liberation ); then
  echo "error: could not install chromium and chromium-driver; the status page test cannot run" >&2
  exit 1
fi
# The API document is fuzzed against a live server by schemathesis (pinned, from
# PyPI), installed once into a private virtual environment under target/.
schemathesis_version=4.32.5
schemathesis_venv=target/schemathesis-$schemathesis_version
if [ ! -x "$schemathesis_venv/bin/schemathesis" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    # No probe names the venv module, so the packages are installed unconditionally.
    ( . scripts/services/common.sh && ensure_packages /nonexistent python3 python3-venv ) || {
      echo "error: could not install python3 and python3-venv; the API document cannot be fuzzed" >&2
      exit 1
    }
  fi
  rm -rf "$schemathesis_venv"
  if ! { python3 -m venv "$schemathesis_venv" &&
    "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"; }; then
    echo "error: could not install schemathesis $schemathesis_version from PyPI; the API document cannot be fuzzed" >&2
    exit 1
  fi
fi
export PROFILESTORE_SCHEMATHESIS="$PWD/$schemathesis_venv/bin/schemathesis"
# From here on, a test that needs a server and cannot reach one fails instead of skipping.
export PROFILESTORE_REQUIRE_SERVICES=1

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --all-targets --locked
