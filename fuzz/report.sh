#!/usr/bin/env bash
# The README's campaign table from fuzz/campaign.log: the latest line of
# each target, in the order of src/fuzzing/mod.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "| target | executions | seconds | executions/s | corpus | result |"
echo "|---|---:|---:|---:|---:|---|"
for t in $(grep -o 'name: "[a-z_]*"' src/fuzzing/mod.rs | sed 's/name: "\(.*\)"/\1/'); do
  line=$(grep " $t executions=" fuzz/campaign.log | tail -1 || true)
  if [ -z "$line" ]; then
    echo "| \`$t\` | — | — | — | — | not run yet |"
    continue
  fi
  field() { grep -o "$1=[^ ]*" <<<"$line" | cut -d= -f2; }
  result=$(sed 's/.*corpus=[0-9]* //' <<<"$line")
  printf '| `%s` | %s | %s | %s | %s | %s |\n' "$t" "$(field executions)" "$(field seconds)" "$(field execs_per_s)" "$(field corpus)" "$result"
done
