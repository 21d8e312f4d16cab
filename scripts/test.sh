#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, every test (unit, property, CLI over the
# samples, end-to-end, the AWS adapters against local emulators). Needs the Rust toolchain and python3
# (the emulators are pip-installed into .venv-moto / .venv-ministack on first use); `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}" CARGO_INCREMENTAL=0

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "emulators: moto and ministack on loopback"
# The AWS adapters' tests run the real SDK against them (crates/aws/tests); stopped whatever happens next.
./scripts/emulators.sh install
trap './scripts/emulators.sh stop' EXIT
./scripts/emulators.sh start
# shellcheck source=/dev/null
source target/emulators/env
# Emulators accept any credentials; fixed fake ones keep a developer's real ones out of the tests.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE

step "chromium: the HTML report's browser test"
# crates/cli/tests/html_chromium.rs opens the report in headless Chromium (and fails without it); a fresh
# CI machine has only Debian's package archive, so install Debian's chromium on first use.
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
chromium --version 2>/dev/null

step "tests"
# The detector's, the reporter's and the scanner's debug bootstraps, which tests/lambda.rs and
# tests/distributed.rs deploy on ministack, and the CLI the latter runs (they share the test build's artifacts).
cargo build -p tokenwatch-detector -p tokenwatch-reporter -p tokenwatch-scanner -p tokenwatch --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "infra: cfn-lint, sam validate --lint, sam build"
# Installs pinned aws-sam-cli, cfn-lint and cargo-lambda into their own venvs on first use, offline checks
# the templates, then builds the arm64 release bootstrap exactly as `sam build` does for a deploy.
./scripts/infra-check.sh
