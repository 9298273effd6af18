#!/usr/bin/env bash
# A fuzzing campaign over every target (nightly + cargo-fuzz; overflow and
# debug assertions on, AddressSanitizer): RUNS executions each (default
# 10 million), seeds written first, the corpus grown in place, then
# minimised. One line per target goes to fuzz/campaign.log: executions,
# seconds, execs/s, corpus size, and whether it crashed (the reproducer is
# then in fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/).
#   fuzz/campaign.sh [RUNS] [target...]
# WORKERS=N splits each target's RUNS over N processes on the same corpus
# (one per core; the line sums them). FUZZ_BIN=<dir> reuses the binaries an
# earlier campaign built (its snapshot of HEAD) instead of building.
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(grep -o 'name = "[a-z_]*"' fuzz/Cargo.toml | sed 's/name = "\(.*\)"/\1/' | grep -v device-lorawan-fuzz)
fi
cargo test --quiet --test fuzz_corpora -- --ignored write_seeds >/dev/null
# The binaries are built from a snapshot of HEAD (a git worktree) and
# copied out: editing the crate mid-campaign changes nothing. AddressSanitizer
# for the target that runs C (QuickJS); the others are safe Rust, fuzzed
# faster without it (SANITIZER=address to force it).
root=$PWD
if [ -n "${FUZZ_BIN:-}" ]; then
  bin=$FUZZ_BIN
else
  src=$(mktemp -d)/src
  git worktree add --detach -q "$src" HEAD
  trap 'git -C "$root" worktree remove --force "$src"' EXIT
  build() {
    (cd "$src/fuzz" && cargo +nightly fuzz build -O -a -s "$1" --target-dir "$root/fuzz/target/$1" "${@:2}") >/dev/null 2>&1 \
      || { echo "fuzz build failed (sanitizer $1)" >&2; exit 1; }
  }
  bin=$(mktemp -d)
  build "${SANITIZER:-none}"
  cp fuzz/target/"${SANITIZER:-none}"/x86_64-unknown-linux-gnu/release/* "$bin/" 2>/dev/null
  build address js_output
  cp fuzz/target/address/x86_64-unknown-linux-gnu/release/js_output "$bin/"
fi
mkdir -p fuzz/artifacts
for t in "${targets[@]}"; do
  start=$(date +%s)
  mkdir -p "fuzz/artifacts/$t"
  workers=${WORKERS:-1}
  logs=$(mktemp -d)
  for w in $(seq 1 "$workers"); do
    "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -runs=$(( runs / workers )) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "fuzz/corpus/$t" >"$logs/$w" 2>&1 &
  done
  status=0
  for w in $(seq 1 "$workers"); do
    wait -n; s=$?
    # The worst exit wins: a crash over an interruption over clean.
    if [ $s -ne 0 ] && { [ $status -eq 0 ] || [ $status -eq 72 ]; }; then status=$s; fi
  done
  out=$(cat "$logs"/*)
  rm -rf "$logs"
  secs=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' <<<"$out" | grep -o '[0-9]*$' | paste -sd+ | bc)
  # 72: libFuzzer's exit on SIGINT (a run stopped short, no crash found).
  case $status in
    0) verdict=clean ;;
    72) verdict="interrupted, no crash" ;;
    *) verdict="CRASH (exit $status)" ;;
  esac
  printf '%s %s executions=%s seconds=%s execs_per_s=%s corpus=%s %s\n' \
    "$(date -u +%FT%TZ)" "$t" "${execs:-?}" "$secs" "$(( ${execs:-0} / (secs > 0 ? secs : 1) ))" \
    "$(ls "fuzz/corpus/$t" | wc -l)" "$verdict" | tee -a fuzz/campaign.log
  [ $status -eq 0 ] || [ $status -eq 72 ] || grep -A30 -m1 'panicked\|ERROR: AddressSanitizer\|deadly signal' <<<"$out" | head -40
done
