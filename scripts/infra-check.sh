#!/usr/bin/env bash
# The SAM deployment's checks, offline and without AWS credentials:
#   install  .venv-sam (aws-sam-cli), .venv-cfnlint (cfn-lint), .venv-cargo-lambda (cargo-lambda with zig),
#            pinned, each in its own venv (pip would downgrade SAM and cfn-lint in a shared one), and the
#            aarch64 Rust target the arm64 function is built for
#   lint     cfn-lint infra/*.yaml, then sam validate --lint
#   build    sam build in infra/ (the release arm64 bootstrap, via cargo-lambda), timed
#   all      the three in order (the default; scripts/test.sh runs this)
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
CARGO_LAMBDA_VERSION=1.9.2
LAMBDA_TARGET=aarch64-unknown-linux-gnu

die() { printf 'infra-check: %s\n' "$*" >&2; exit 1; }
say() { printf 'infra-check: %s\n' "$*" >&2; }

# A venv is reused only when it holds exactly the pinned version, so a bump reinstalls.
install_one() {
  local venv=$1 dist=$2 version=$3
  if [[ -x $venv/bin/python ]] && [[ "$("$venv/bin/python" -m pip show "$dist" 2>/dev/null | sed -n 's/^Version: //p')" == "$version" ]]; then
    return
  fi
  say "installing $dist==$version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$dist==$version" ||
    die "pip install $dist==$version failed"
}

install() {
  command -v python3 >/dev/null || die "python3 is required (Debian: apt-get install python3-venv)"
  install_one .venv-sam aws-sam-cli "$SAM_VERSION"
  install_one .venv-cfnlint cfn-lint "$CFN_LINT_VERSION"
  install_one .venv-cargo-lambda cargo-lambda "$CARGO_LAMBDA_VERSION"
  command -v rustup >/dev/null ||
    die "rustup is required to add the $LAMBDA_TARGET target (the function runs on arm64 Lambda)"
  if ! rustup target list --installed | grep -qx "$LAMBDA_TARGET"; then
    say "adding the Rust target $LAMBDA_TARGET"
    rustup target add "$LAMBDA_TARGET" ||
      die "'rustup target add $LAMBDA_TARGET' failed: sam build cannot make the arm64 bootstrap without it (is static.rust-lang.org reachable? an offline machine needs the target preinstalled)"
  fi
}

# No credentials and no profile reach the tools: everything here must work offline. SAM needs a region.
offline() {
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0 "$@"
}

need() {
  [[ -x .venv-sam/bin/sam && -x .venv-cfnlint/bin/cfn-lint && -x .venv-cargo-lambda/bin/cargo-lambda ]] ||
    die "not installed: run scripts/infra-check.sh install"
}

lint() {
  need
  say "cfn-lint $(.venv-cfnlint/bin/cfn-lint --version | sed 's/^cfn-lint //') infra/*.yaml"
  offline .venv-cfnlint/bin/cfn-lint infra/*.yaml
  say "sam validate --lint"
  offline .venv-sam/bin/sam validate --lint --template infra/template.yaml
}

build() {
  need
  rustup target list --installed | grep -qx "$LAMBDA_TARGET" || die "the $LAMBDA_TARGET target is missing: run scripts/infra-check.sh install"
  local start=$SECONDS
  say "sam build (release, arm64; cargo-lambda $CARGO_LAMBDA_VERSION)"
  # Exactly what a user runs from infra/; cargo-lambda and its zig come from their venv.
  (cd infra && PATH="$PWD/../.venv-cargo-lambda/bin:$PATH" offline ../.venv-sam/bin/sam build)
  say "sam build took $((SECONDS - start)) s"
  local name bootstrap file_kind
  for name in DetectorFunction ReporterFunction; do
    bootstrap=infra/.aws-sam/build/$name/bootstrap
    [[ -f $bootstrap ]] || die "sam build reported success but $bootstrap is missing"
    file_kind=$(od -An -tx1 -j18 -N2 "$bootstrap" | tr -d ' \n')
    [[ $file_kind == b700 ]] || die "$bootstrap is not an aarch64 ELF (e_machine $file_kind)"
    say "$bootstrap is $(stat -c %s "$bootstrap") bytes, aarch64"
  done
}

case "${1:-all}" in
  install) install ;;
  lint) lint ;;
  build) build ;;
  all) install && lint && build ;;
  *) die "usage: scripts/infra-check.sh [install|lint|build|all]" ;;
esac
