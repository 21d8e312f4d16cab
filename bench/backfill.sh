#!/usr/bin/env bash
# Measure the back-fill from S3: `tokenwatch report --from-trail` over a generated trail uploaded to moto's
# S3 (real SDK, real HTTP on loopback). Prints wall time, CPU time, records/s, MB/s (of JSON and of gzip
# downloaded), peak memory, and what the emulator spent serving it; checks that every record was read and
# every injected failure found, and that peak memory stayed under 200 MB.
#
#   bench/backfill.sh [RECORDS]        # default 1000000; the corpus is shared with bench/analyze.sh
#
# Emulators are started with scripts/emulators.sh (reused if running, and left running); the corpus
# uploaded to moto is deleted again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/corpus.sh
source bench/corpus.sh "$@"
limit_mb=200

scripts/emulators.sh install
scripts/emulators.sh start
# shellcheck disable=SC1091
source target/emulators/env
moto_pid=$(cat target/emulators/moto.pid)
bucket="tokenwatch-bench-$records"

# The emulator is shared and keeps objects in memory: take the corpus out again however the run ends.
cleanup() {
  .venv-moto/bin/python - "$TOKENWATCH_MOTO_ENDPOINT" "$bucket" <<'PY' || true
import sys, boto3, botocore.config
endpoint, bucket = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=botocore.config.Config(s3={"addressing_style": "path"}))
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
    if keys:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
s3.delete_bucket(Bucket=bucket)
PY
}
trap cleanup EXIT

# Upload with boto3 from moto's own venv (8 at a time), under the keys the trail layout gives them.
echo "uploading $corpus to s3://$bucket on moto ..." >&2
.venv-moto/bin/python - "$TOKENWATCH_MOTO_ENDPOINT" "$bucket" "$corpus" <<'EOF'
import os, sys, concurrent.futures, boto3, botocore.config
endpoint, bucket, root = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=botocore.config.Config(
                      s3={"addressing_style": "path"}, max_pool_connections=8))
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda p: s3.upload_file(p, bucket, os.path.relpath(p, root)), paths))
print(f"uploaded {len(paths)} objects", file=sys.stderr)
EOF

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_s=$(getconf CLK_TCK)

export AWS_ENDPOINT_URL="$TOKENWATCH_MOTO_ENDPOINT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3

measure() { # name, command
  local name="$1" cmd="$2" before after wall user sys rss
  before=$(cpu_ticks "$moto_pid")
  /usr/bin/time -f '%e %U %S %M' -o "$out/time.txt" bash -c "$cmd"
  after=$(cpu_ticks "$moto_pid")
  read -r wall user sys rss < "$out/time.txt"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v rec="$records" -v jb="$json_bytes" \
      -v gb="$gzip_bytes" -v m="$(( after - before ))" -v hz="$ticks_per_s" 'BEGIN {
    cpu = u + s; if (w <= 0) w = 0.01;
    printf "| %-44s | %6.2f | %6.2f | %10.0f | %8.0f | %8.1f | %8.1f | %8.2f |\n", n, w, cpu, rec / w, jb / w / 1e6, gb / w / 1e6, r / 1024, m / hz }'
  echo "$rss" > "$out/rss_kb.txt"
}

awk -v r="$records" -v j="$json_bytes" -v g="$gzip_bytes" -v c="$(nproc)" \
  'BEGIN { printf "\ntrail: %d records, %.0f MB JSON, %.0f MB gzip in S3 (moto on loopback); %d cores\n\n", r, j / 1e6, g / 1e6, c }'
echo "| contender                                    | wall s | CPU s  | records/s  | JSON MB/s | gzip MB/s | peak MB  | moto CPU s |"
echo "|----------------------------------------------|--------|--------|------------|-----------|-----------|----------|------------|"
measure "tokenwatch report --from-trail" \
  "$bin report --from-trail s3://$bucket --format json > $out/backfill.json 2> $out/backfill.err"
rss_kb=$(cat "$out/rss_kb.txt")
measure "tokenwatch report --from-trail --downloads 2" \
  "$bin report --from-trail s3://$bucket --downloads 2 --format json > /dev/null 2>&1"
measure "tokenwatch analyze (same files, local disk)" "$bin analyze --format json $corpus > $out/analyze.json"

echo
sed 's/^/  /' "$out/backfill.err"
got_failures=$(jq .failures "$out/backfill.json")
got_records=$(jq .records "$out/backfill.json")
status=0
if [ "$got_failures" = "$want_failures" ] && [ "$got_records" = "$records" ]; then
  echo "check: report --from-trail read $got_records records and found all $want_failures injected failures"
else
  echo "check FAILED: report --from-trail read $got_records/$records records, found $got_failures/$want_failures failures" >&2
  status=1
fi
if jq -e --slurpfile a "$out/analyze.json" '.groups == $a[0].groups' "$out/backfill.json" >/dev/null; then
  echo "check: the same groups as tokenwatch analyze over the local files"
else
  echo "check FAILED: report --from-trail and analyze disagree on the groups" >&2
  status=1
fi
if [ "$rss_kb" -lt $(( limit_mb * 1024 )) ]; then
  echo "check: peak memory $(( rss_kb / 1024 )) MB < $limit_mb MB"
else
  echo "check FAILED: peak memory $(( rss_kb / 1024 )) MB >= $limit_mb MB" >&2
  status=1
fi
exit $status
