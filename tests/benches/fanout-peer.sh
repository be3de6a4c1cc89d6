#!/usr/bin/env bash
# Issue 14 in one sitting: the Mosquitto fan-out peer and Haven's lockdown benchmark with the
# same N, one after the other on the same machine, and both tables printed at the end.
#
#   tests/benches/fanout-peer.sh                        # N = 1,000 and 10,000, 3 peer reps, 5 rounds
#   NS="1000" REPS=1 ROUNDS=5 tests/benches/fanout-peer.sh
#
# The peer (../shared/bench/fanout/run.sh: Eclipse Mosquitto over mutual TLS, one connection
# per device, its own load client) is referenced by path and never copied into the repository;
# without it this script runs Haven's side alone and says so. Neither side is pinned to a core
# (the peer's PIN=0, Haven's controller and its simulated agents likewise share both cores),
# so both load clients run on the same cores as their server.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PEER=${PEER:-$REPO/../shared/bench/fanout/run.sh}
NS=${NS:-"1000 10000"}
REPS=${REPS:-3}               # peer runs per N (median taken by the peer)
MODES=${MODES:-all}           # the peer's broadcast, the same shape as a home-wide lockdown
ROUNDS=${ROUNDS:-5}           # Haven lockdown rounds per N
OUT=${OUT:-/tmp/haven-fanout-peer}
mkdir -p "$OUT"

machine() {
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r)," \
       "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), open files $(ulimit -Hn)," \
       "load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
}

echo "== machine at start: $(machine)"
if [ -x "$PEER" ]; then
  echo "== peer: $PEER (NS=\"$NS\" MODES=$MODES REPS=$REPS PIN=0)"
  NS="$NS" MODES="$MODES" REPS="$REPS" PIN=0 "$PEER" > "$OUT/peer.md"
else
  echo "SKIPPED peer: $PEER not found (it lives beside the repository, not in it)" | tee "$OUT/peer.md"
fi

agents=$(echo "$NS" | tr ' ' ',')
echo "== haven: cargo bench -p haven-tests --bench fanout -- --lockdown --agents $agents --rounds $ROUNDS --idle-secs 0"
echo "== machine before haven: $(machine)"
(cd "$REPO" && cargo bench -q -p haven-tests --bench fanout -- \
  --lockdown --agents "$agents" --rounds "$ROUNDS" --idle-secs 0) | tee "$OUT/haven.txt"
echo "== machine at end: $(machine)"

echo
echo "==================== peer (Mosquitto) ===================="
cat "$OUT/peer.md"
echo
echo "==================== Haven ===================="
grep -E '^(==|  )' "$OUT/haven.txt" || cat "$OUT/haven.txt"
