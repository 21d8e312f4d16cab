#!/usr/bin/env bash
# Memory of `tokenwatch analyze` against the number of distinct failing groups: for each size, trail files
# holding that many expired-token failures, each of its own group (account + role + session, one failure
# each, fields as long as real ones: bench/groups.py), and the peak RSS and CPU of `analyze --format json`
# (and of the default table with FORMATS="json table"). With a baseline binary, it runs beside the current
# one on the same files, so that the two are compared in one run on one machine.
#
#   bench/groups.sh [BASELINE_BINARY]                  # sizes 100000 300000 1000000
#   SIZES="300000" FORMATS="json table" bench/groups.sh /work/bench-bin/tokenwatch-before-mem
#
# Each corpus (about 1.2 KB a group) is written under target/bench-groups/ and deleted after its size is
# measured. Fails if the current binary does not report one group per failure, or if its peak exceeds
# the targets (300 MB at 300,000 groups, 1 GB at 1,000,000).
set -euo pipefail
cd "$(dirname "$0")/.."
baseline="${1:-}"
sizes="${SIZES:-100000 300000 1000000}"
formats="${FORMATS:-json}"
work=target/bench-groups

[ -x /usr/bin/time ] || { echo "bench: GNU time is needed (apt-get install time)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench: python3 is needed" >&2; exit 1; }
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
  echo "bench: $baseline is not an executable" >&2
  exit 1
fi

cargo build --release --locked -p tokenwatch --features simulate --quiet
bin=target/release/tokenwatch
mkdir -p "$work"
trap 'rm -rf "$work/corpus"' EXIT

contenders=("after:$bin")
if [ -n "$baseline" ]; then contenders=("before:$baseline" "${contenders[@]}"); fi

# One line per run: size, format, name, CPU s, wall s, peak KB, groups reported.
: > "$work/runs.txt"
status=0
for n in $sizes; do
  rm -rf "$work/corpus"
  echo "generating $n groups ..." >&2
  python3 bench/groups.py "$n" "$work/corpus"
  cat "$work/corpus"/*.json > /dev/null
  for format in $formats; do
    for c in "${contenders[@]}"; do
      name=${c%%:*}
      exe=${c#*:}
      echo "$n groups, $format: $name" >&2
      /usr/bin/time -f '%U %S %e %M' -o "$work/time.txt" \
        "$exe" analyze --quiet --format "$format" -o "$work/out.$format" "$work/corpus" 2> "$work/stderr.txt" || {
        echo "bench: $name failed on $n groups:" >&2
        cat "$work/stderr.txt" >&2
        exit 1
      }
      read -r user sys wall rss_kb < "$work/time.txt"
      if [ "$format" = json ]; then
        reported=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["groups"]))' "$work/out.json")
      else
        reported=-
      fi
      echo "$n $format $name $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $wall $rss_kb $reported" >> "$work/runs.txt"
      if [ "$name" = after ] && [ "$reported" != - ] && [ "$reported" != "$n" ]; then
        echo "check FAILED: $n groups written, $reported reported" >&2
        status=1
      fi
    done
    rm -f "$work/out.$format"
  done
done

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| groups | format | binary | peak MB | MB per 1,000 groups | CPU s | wall s |"
echo "|---:|---|---|---:|---:|---:|---:|"
while read -r n format name cpu wall rss_kb _; do
  awk -v n="$n" -v f="$format" -v b="$name" -v c="$cpu" -v w="$wall" -v r="$rss_kb" 'BEGIN {
    printf "| %d | %s | %s | %.0f | %.2f | %.2f | %.2f |\n", n, f, b, r / 1024, r / 1024 / (n / 1000), c, w }'
done < "$work/runs.txt"

# The targets, for the current binary in JSON.
while read -r n format name _ _ rss_kb _; do
  [ "$name" = after ] && [ "$format" = json ] || continue
  limit=$(awk -v n="$n" 'BEGIN { if (n <= 300000) print 300; else if (n <= 1000000) print 1000; else print 0 }')
  [ "$limit" -gt 0 ] || continue
  if [ $((rss_kb / 1024)) -gt "$limit" ]; then
    echo "check FAILED: $n groups took $((rss_kb / 1024)) MB (target under $limit MB)" >&2
    status=1
  else
    echo "check: $n groups in $((rss_kb / 1024)) MB (target under $limit MB)"
  fi
done < "$work/runs.txt"
exit $status
