# Sourced by the bench scripts (`source bench/corpus.sh "$@"` from the repository root): checks the tools,
# builds the release binary, and generates the simulated corpus of RECORDS (default 1000000) records (seed 7) once,
# keeping it under bench/corpus/. Sets: records corpus summary out bin json_bytes gzip_bytes want_failures.
records="${1:-1000000}"
seed=7
corpus="bench/corpus/$records"
# Named for the seed, so that a corpus made with another one is made again.
summary="bench/corpus/$records.seed$seed.summary.json"
out="bench/out"
mkdir -p "$out"

command -v jq >/dev/null || { echo "bench: jq is needed (apt-get install jq)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: GNU time is needed (apt-get install time)" >&2; exit 1; }

# `simulate` is a development tool behind the CLI's `simulate` feature; the analyze path is the same code.
cargo build --release --locked -p tokenwatch --features simulate --quiet
bin=target/release/tokenwatch

# The summary sits beside the corpus, not in it: everything under the corpus folder is read as input.
if [ ! -f "$summary" ]; then
  rm -rf "$corpus"
  echo "generating $records records under $corpus ..." >&2
  "$bin" simulate --records "$records" --seed "$seed" --out "$corpus" > "$out/summary.tmp"
  mv "$out/summary.tmp" "$summary"
fi
json_bytes=$(jq .json_bytes "$summary")
gzip_bytes=$(jq .gzip_bytes "$summary")
want_failures=$(jq .failures "$summary")
