#!/usr/bin/env bash
# The SAM deployment's checks, offline and without AWS credentials:
#   install  .venv-sam (aws-sam-cli), .venv-cfnlint (cfn-lint), .venv-checkov (checkov), .venv-cargo-lambda
#            (cargo-lambda with zig), pinned, each in its own venv (pip would downgrade SAM and cfn-lint in a
#            shared one), and the aarch64 Rust target the arm64 function is built for
#   lint     cfn-lint infra/*.yaml, sam validate --lint, then checkov with the skips of infra/.checkov.yaml
#   build    sam build in infra/ (the release arm64 bootstrap, via cargo-lambda), timed
#   all      the three in order (the default; scripts/test.sh runs this)
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
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
  install_one .venv-checkov checkov "$CHECKOV_VERSION"
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
  local tool
  for tool in "$@"; do
    [[ -x $tool ]] || die "$tool is not installed: run scripts/infra-check.sh install"
  done
}

lint() {
  need .venv-cfnlint/bin/cfn-lint .venv-sam/bin/sam .venv-checkov/bin/checkov
  say "cfn-lint $(.venv-cfnlint/bin/cfn-lint --version | sed 's/^cfn-lint //') infra/*.yaml"
  offline .venv-cfnlint/bin/cfn-lint infra/*.yaml
  say "sam validate --lint"
  offline .venv-sam/bin/sam validate --lint --template infra/template.yaml
  run_checkov
}

# checkov reads infra/.checkov.yaml by itself when scanning infra/. --skip-download keeps it offline (no
# Prisma Cloud guidelines or policies).
run_checkov() {
  say "checkov $CHECKOV_VERSION infra/ (skips and their reasons: infra/.checkov.yaml)"
  offline .venv-checkov/bin/checkov -d infra
  # A skip outlives its reason unnoticed: scan a copy without the configuration, and every skipped check
  # must still be a finding there.
  local bare skipped failing stale
  bare=$(mktemp -d)
  cp infra/*.yaml "$bare"/
  skipped=$(sed -n 's/^  - \(CKV[A-Z0-9_]*\)$/\1/p' infra/.checkov.yaml | sort -u)
  failing=$(offline .venv-checkov/bin/checkov -d "$bare" --framework cloudformation --skip-download --quiet --soft-fail -o json |
    .venv-checkov/bin/python -c '
import json, sys
reports = json.load(sys.stdin)
for report in reports if isinstance(reports, list) else [reports]:
    for check in report.get("results", {}).get("failed_checks", []):
        print(check["check_id"])
' | sort -u) || { rm -rf "$bare"; die "checkov without the skips did not run"; }
  rm -rf "$bare"
  stale=$(comm -23 <(printf '%s\n' "$skipped") <(printf '%s\n' "$failing"))
  [[ -z $stale ]] || die "infra/.checkov.yaml skips checks that find nothing any more: $(echo $stale)"
}

build() {
  need .venv-sam/bin/sam .venv-cargo-lambda/bin/cargo-lambda
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
