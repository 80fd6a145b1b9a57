#!/bin/bash
# What following a long log costs: `avxrm logs -f` of a running local instance whose
# log holds 52 MB, for 20 s, with each avxrm binary given, against an all-in-one of
# the last one; prints the all-in-one's and the client's CPU time for each.
#   tools/logbench.sh <avxrm> [<avxrm>…]     (docs/benchmarks.md, "Logs")
set -e
[ $# -ge 1 ] || { echo "usage: $0 <avxrm> [<avxrm>…]" >&2; exit 2; }
D=$(mktemp -d); trap 'rm -rf $D' EXIT
SRV=${@: -1}
$SRV up --http-addr 127.0.0.1:18090 --mongo-addr 127.0.0.1:27190 --nats-addr 127.0.0.1:14290 --data-dir $D/data > $D/up.log 2>&1 &
UP=$!
export RM_SERVER=http://127.0.0.1:18090 HOME=$D
A=$SRV
until $A queues ls >/dev/null 2>&1; do sleep 0.2; done
$A plugins create local --set type=local --set is_default=true >/dev/null
$A queues create Default --limit 4 >/dev/null
$A apps create big --set-string version=1 --set image=x --set 'command=["/bin/sh","-c","yes $(printf %098d 0) | head -n 530000; sleep 300"]' >/dev/null
J=$($A submit --queue Default --app big:1 --workers 1)
until [ "$($A logs $J --tail 1 2>/dev/null | wc -c)" -gt 50 ]; do sleep 1; done
sleep 3
cpu() { awk '{print $14+$15}' /proc/$UP/stat; }
for cli in "$@"; do
  c0=$(cpu)
  /usr/bin/time -f "$cli: CLI %e s, user %U s, system %S s" timeout 20 $cli logs -f $J --role worker --index 0 > $D/out 2>$D/err || true
  c1=$(cpu)
  echo "$cli: all-in-one CPU $(( (c1-c0) )) ticks (1/100 s) over the 20 s; printed $(wc -c < $D/out) bytes"; tail -1 $D/err
done
$A jobs cancel $J >/dev/null
kill $UP; wait $UP 2>/dev/null || true
pkill -f "head -n 530000; sleep 300" || true # the instance outlives the all-in-one (local driver)
