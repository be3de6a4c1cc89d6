#!/usr/bin/env bash
# Haven's web filter as the third peer of ../shared/bench/dns (dnsmasq and unbound with a
# 1,000,000-domain blocklist): same data, same upstream, same dnsperf commands and checks.
# Everything stays on 127.0.0.1; only processes this script started are stopped.
#
#   apt-get install -y dnsmasq-base unbound dnsperf bind9-dnsutils   # once (see that README)
#   cargo build --release -p haven-agent
#   tests/benches/dns-peer.sh            # RUNS=1 DUR=30 RATE=500 W=/tmp/dnsbench THREADS=1
#   GATE=1 tests/benches/dns-peer.sh     # with DNS-gated egress on, as on a device (root): the
#                                        # whole run moves into a network namespace it makes
#                                        # and removes, so the host's firewall is never touched
#
# Prints one table row in the peer benchmark's format; raw figures in $W/haven-results.tsv.
set -euo pipefail
GATE=${GATE:-0}
if [ "$GATE" = 1 ] && [ -z "${HAVEN_BENCH_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "GATE=1 needs root (it makes a network namespace)" >&2; exit 1; }
  ns=haven-bench-dns-$$
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  rc=0
  HAVEN_BENCH_NS=$ns ip netns exec "$ns" "$0" "$@" || rc=$?
  ip netns delete "$ns"
  exit $rc
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench/dns}
W=${W:-/tmp/dnsbench} RUNS=${RUNS:-1} DUR=${DUR:-30} RATE=${RATE:-500} THREADS=${THREADS:-1}
UP=5300 HV=5303
AGENT=${AGENT:-$ROOT/target/release/haven-agent}
[ -d "$BENCH" ] || { echo "skipped: the peer benchmark is not at $BENCH" >&2; exit 0; }
for tool in dnsmasq dnsperf dig python3; do
  command -v $tool >/dev/null || { echo "needs $tool (see $BENCH/README.md)" >&2; exit 1; }
done
[ -x "$AGENT" ] || { echo "build it first: cargo build --release -p haven-agent" >&2; exit 1; }
mkdir -p "$W" && cd "$W"
for p in $UP $HV; do
  ! ss -Hlun "sport = :$p" | grep -q . || { echo "port $p busy" >&2; exit 1; }
done
[ -s blocklist.txt ] && [ -s queries.txt ] && [ -s checks.txt ] || python3 "$BENCH/gen-list.py" "$W"

UPPID= PID=
cleanup() { for p in $PID $UPPID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; true; }
trap cleanup EXIT

# The same upstream as the peers': answers any name with 192.0.2.1.
cat > haven-upstream.conf <<CONF
port=$UP
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
address=/#/192.0.2.1
local-ttl=3600
CONF
rcode() { dig +tries=1 +time=1 @127.0.0.1 -p "$1" "$2" A 2>/dev/null | grep -oP 'status: \K[A-Z]+' || echo NONE; }
p99() { awk '$1==">"{print $NF*1000}' "$1" | sort -g | awk '{a[NR]=$1} END{printf "%.2f", a[int(NR*0.99)]}'; }
field() { grep -oP "$2\s+\K[0-9.]+" "$1" | head -1; }

dnsmasq -k -C "$W/haven-upstream.conf" --pid-file= --log-facility=- > haven-upstream.log 2>&1 &
UPPID=$!
until [ "$(rcode $UP probe.example)" = NOERROR ]; do sleep 0.05; done

HAVEN=("$AGENT" dns-filter --list "$W/blocklist.txt" --listen 127.0.0.1:$HV --upstream 127.0.0.1:$UP --threads "$THREADS")
LABEL=haven
if [ "$GATE" = 1 ]; then HAVEN+=(--gate); LABEL=haven-gated; fi
: > haven-results.tsv
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS: haven" >&2
  probe=$(awk '$2=="NXDOMAIN"{print $1; exit}' checks.txt)
  t0=$(date +%s.%N)
  "${HAVEN[@]}" > haven.log 2>&1 &
  PID=$!
  until [ "$(rcode $HV "$probe")" = NXDOMAIN ]; do
    kill -0 $PID 2>/dev/null || { echo "haven died:"; tail haven.log; exit 1; }
    sleep 0.05
  done
  load=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
  rss=$(awk '/VmRSS/{printf "%.1f", $2/1024}' /proc/$PID/status)
  ok=0 n=0
  while read -r q want; do
    got=$(rcode $HV "$q"); n=$((n+1)); [ "$got" = "$want" ] && ok=$((ok+1))
    [ "$run" = 1 ] && echo "  check haven $q: want $want got $got" >&2
  done < checks.txt
  dnsperf -s 127.0.0.1 -p $HV -d queries.txt -l 10 -Q "$RATE" -v > haven-light.out 2>&1
  dnsperf -s 127.0.0.1 -p $HV -d queries.txt -l "$DUR" -v > haven-perf.out 2>&1
  f=haven-perf.out
  rss_end=$(awk '/VmRSS/{printf "%.1f", $2/1024}' /proc/$PID/status)
  nx=$(grep -oP 'NXDOMAIN \d+ \(\K[0-9.]+' "$f" || echo 0)
  printf '%s\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t%s\t%s\t%s\t%s/%s\n' "$LABEL" "$run" "$load" "$rss" "$rss_end" \
    "$(field "$f" 'Queries per second:')" "$(awk -v s="$(field "$f" 'Average Latency \(s\):')" 'BEGIN{print s*1000}')" \
    "$(p99 "$f")" "$(p99 haven-light.out)" "$nx" "$ok" "$n" >> haven-results.tsv
  kill $PID; wait $PID 2>/dev/null || true; PID=
  tail -2 haven.log >&2
done

echo
echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); dnsperf, the upstream"
echo "and the filter share them. haven-agent dns-filter, $THREADS UDP thread(s). Median of $RUNS run(s)."
python3 - haven-results.tsv "$RATE" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
hdr = ["peer", "load s", "RSS MB", "RSS end", "qps", "avg ms", "p99 ms", f"p99@{sys.argv[2]}", "nx%", "checks"]
print("| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
med = [f"{statistics.median(float(r[i]) for r in rows):g}" for i in range(2, 10)]
print("| " + " | ".join([rows[0][0]] + med + [" ".join(sorted({r[10] for r in rows}))]) + " |")
PY
