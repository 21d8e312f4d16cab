#!/usr/bin/env bash
# Benchmark `tokenwatch analyze` on a generated corpus of gzip trail files, side by side with the
# baselines in the same run: `zcat > /dev/null` (the decompression floor) and `zcat | jq select(...)`
# (what one would script by hand). Prints wall time, CPU time, cores used, records/s, MB/s of JSON and
# peak memory for each, and checks that tokenwatch found every failure the generator injected.
#
#   bench/analyze.sh [RECORDS]        # default 1000000; the corpus is kept under bench/corpus/
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/corpus.sh
source bench/corpus.sh "$@"
find "$corpus" -name '*.json.gz' | sort > "$out/files.txt"

# Warm the page cache so every contender reads from memory.
xargs cat < "$out/files.txt" > /dev/null

measure() { # name, command
  local name="$1" cmd="$2"
  /usr/bin/time -f '%e %U %S %M' -o "$out/time.txt" bash -c "$cmd"
  read -r wall user sys rss_kb < "$out/time.txt"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss_kb" -v rec="$records" -v jb="$json_bytes" 'BEGIN {
    cpu = u + s; if (w <= 0) w = 0.01;
    printf "| %-34s | %7.2f | %7.2f | %5.2f | %11.0f | %8.0f | %8.1f |\n", n, w, cpu, cpu / w, rec / w, jb / w / 1e6, r / 1024 }'
}

awk -v r="$records" -v f="$(wc -l < "$out/files.txt")" -v j="$json_bytes" -v g="$gzip_bytes" -v c="$(nproc)" \
  'BEGIN { printf "\ncorpus: %d records, %d files, %.0f MB JSON, %.0f MB gzip; %d cores\n\n", r, f, j / 1e6, g / 1e6, c }'
echo "| contender                          | wall s  | CPU s   | cores | records/s   | MB/s     | peak MB  |"
echo "|------------------------------------|---------|---------|-------|-------------|----------|----------|"
measure "tokenwatch analyze" "$bin analyze --format json $corpus > $out/report.json"
measure "tokenwatch analyze --jobs 1" "$bin analyze --jobs 1 --format json $corpus > /dev/null"
measure "zcat > /dev/null" "xargs zcat < $out/files.txt > /dev/null"
measure "zcat | jq select(errorCode)" "xargs zcat < $out/files.txt | jq -c '.Records[] | select(.errorCode == \"ExpiredToken\" or .errorCode == \"ExpiredTokenException\")' > /dev/null"

got_failures=$(jq .failures "$out/report.json")
got_records=$(jq .records "$out/report.json")
echo
if [ "$got_failures" = "$want_failures" ] && [ "$got_records" = "$records" ]; then
  echo "check: tokenwatch read $got_records records and found all $want_failures injected failures"
else
  echo "check FAILED: tokenwatch read $got_records/$records records, found $got_failures/$want_failures failures" >&2
  exit 1
fi
