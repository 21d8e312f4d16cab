#!/usr/bin/env bash
# Benchmark `tokenwatch analyze` on a generated corpus of gzip trail files, side by side with, in the same
# run and on the same files: decompression alone (`igzip -dc` from ISA-L, the fastest inflate there is
# and the floor; `libdeflate-gunzip` one process per file; `pigz -dc`; `zcat`), the `zcat | jq` one-liner,
# and DuckDB (read_json + unnest + filter + group by). Each contender runs RUNS times, interleaved so that
# a busy machine weighs on all alike; the table gives the median and the least CPU (user + system), the
# median wall time, the largest peak memory (RSS of the largest process), and the median CPU as a multiple
# of tokenwatch's and of igzip's. Checks that tokenwatch read every record and found every failure the
# generator injected, with both job counts.
#
#   bench/analyze.sh [RECORDS]        # default 1000000; the corpus is kept under bench/corpus/
#   RUNS=5 bench/analyze.sh           # runs per contender (default 3)
#   BASELINE=path/to/tokenwatch bench/analyze.sh   # adds another build's `analyze --jobs 1` (before/after)
#
# Installs what is missing: Debian's isal, libdeflate-tools, pigz, jq and time with apt, and a pinned
# DuckDB from PyPI into .venv-duckdb.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
duckdb_version=2.0.0

missing=()
for tool in igzip:isal libdeflate-gunzip:libdeflate-tools pigz:pigz jq:jq /usr/bin/time:time; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  echo "bench: installing ${missing[*]} ..." >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if ! .venv-duckdb/bin/python -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$duckdb_version')" 2>/dev/null; then
  echo "bench: installing duckdb $duckdb_version into .venv-duckdb ..." >&2
  python3 -m venv .venv-duckdb
  .venv-duckdb/bin/pip install -q "duckdb==$duckdb_version"
fi

# shellcheck source=bench/corpus.sh
source bench/corpus.sh "$@"
find "$corpus" -name '*.json.gz' | sort > "$out/files.txt"
files=$(wc -l < "$out/files.txt")

# Warm the page cache so every contender reads from memory.
xargs cat < "$out/files.txt" > /dev/null

names=(
  "tokenwatch analyze"
  "tokenwatch analyze --jobs 1"
  "igzip -dc (ISA-L)"
  "libdeflate-gunzip, a process per file"
  "pigz -dc"
  "zcat"
  'zcat \| jq select(errorCode)'
  "DuckDB read_json, unnest, filter, group"
)
commands=(
  "$bin analyze --format json $corpus > $out/report.json"
  "$bin analyze --jobs 1 --format json $corpus > $out/report-jobs1.json"
  "xargs igzip -dc < $out/files.txt > /dev/null"
  "xargs -n 1 libdeflate-gunzip -c < $out/files.txt > /dev/null"
  "xargs pigz -dc < $out/files.txt > /dev/null"
  "xargs zcat < $out/files.txt > /dev/null"
  "xargs zcat < $out/files.txt | jq -c '.Records[] | select(.errorCode == \"ExpiredToken\" or .errorCode == \"ExpiredTokenException\")' > /dev/null"
  ".venv-duckdb/bin/python bench/duckdb_failures.py $corpus > $out/duckdb.txt"
)
if [ -n "${BASELINE:-}" ]; then
  names+=("baseline analyze --jobs 1 ($BASELINE)")
  commands+=("$BASELINE analyze --jobs 1 --format json $corpus > $out/report-baseline.json")
fi

# One line per run: contender index, wall s, CPU s, peak KB.
: > "$out/runs.txt"
for run in $(seq "$runs"); do
  for i in "${!commands[@]}"; do
    echo "run $run/$runs: ${names[$i]}" >&2
    /usr/bin/time -f '%e %U %S %M' -o "$out/time.txt" bash -c "${commands[$i]}"
    read -r wall user sys rss_kb < "$out/time.txt"
    echo "$i $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $rss_kb" >> "$out/runs.txt"
  done
done

# The median and least of one column (2 wall, 3 CPU) for contender $1.
stat() { awk -v i="$1" -v c="$2" '$1 == i { print $c }' "$out/runs.txt" | sort -g | awk '{ v[NR] = $1 }
  END { printf "%s %s\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1] }'; }
read -r tw_cpu _ < <(stat 0 3)
read -r igzip_cpu _ < <(stat 2 3)

echo
awk -v r="$records" -v f="$files" -v j="$json_bytes" -v g="$gzip_bytes" -v n="$runs" 'BEGIN {
  printf "corpus: %d records, %d files, %.0f MB JSON, %.0f MB gzip; %d runs each\n", r, f, j / 1e6, g / 1e6, n }'
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| contender | CPU s (median) | CPU s (least) | wall s | cores | peak MB | CPU vs tokenwatch | CPU vs igzip |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for i in "${!commands[@]}"; do
  read -r cpu cpu_min < <(stat "$i" 3)
  read -r wall _ < <(stat "$i" 2)
  rss_kb=$(awk -v i="$i" '$1 == i && $4 > m { m = $4 } END { print m }' "$out/runs.txt")
  awk -v n="${names[$i]}" -v c="$cpu" -v cm="$cpu_min" -v w="$wall" -v r="$rss_kb" -v t="$tw_cpu" -v z="$igzip_cpu" 'BEGIN {
    if (w <= 0) w = 0.01;
    printf "| %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.2f× | %.2f× |\n", n, c, cm, w, c / w, r / 1024, c / t, c / z }'
done

echo
got_failures=$(jq .failures "$out/report.json")
got_records=$(jq .records "$out/report.json")
status=0
if [ "$got_failures" = "$want_failures" ] && [ "$got_records" = "$records" ]; then
  echo "check: tokenwatch read $got_records records and found all $want_failures injected failures"
else
  echo "check FAILED: tokenwatch read $got_records/$records records, found $got_failures/$want_failures failures" >&2
  status=1
fi
# `generated_at` is the clock's: the one field two runs may differ in.
if jq -e --slurpfile a "$out/report.json" 'del(.generated_at) == ($a[0] | del(.generated_at))' "$out/report-jobs1.json" > /dev/null; then
  echo "check: --jobs 1 gives the same report"
else
  echo "check FAILED: --jobs 1 gives another report" >&2
  status=1
fi
awk -v t="$tw_cpu" -v z="$igzip_cpu" 'BEGIN { printf "tokenwatch analyze: %.2f× the CPU of igzip -dc (target ≤ 2.0×)\n", t / z }'
if [ -n "${BASELINE:-}" ]; then
  read -r one _ < <(stat 1 3)
  read -r base _ < <(stat $((${#commands[@]} - 1)) 3)
  awk -v a="$one" -v b="$base" -v r="$records" 'BEGIN {
    printf "--jobs 1 against the baseline: %.2f s after, %.2f s before: %+.2f CPU s per million records (%+.1f %%)\n",
      a, b, (a - b) * 1e6 / r, (a - b) * 100 / b }'
fi
echo "DuckDB: $(cat "$out/duckdb.txt") (errorCode only; tokenwatch also reads expiry messages)"
exit $status
