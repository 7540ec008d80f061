# sourced by a session's queue.sh on the GPU host: the environment and the queue's helpers
source /tmp/w/env.sh
cd $W/repo
# step NAME CMD...: run CMD with its output in $L/NAME.log; the timeline line goes to queue.log
step() { local n=$1; shift; echo "=== $n start $(date +%T)"; local t=$SECONDS; "$@" > $L/$n.log 2>&1; local rc=$?; echo "=== $n rc=$rc $((SECONDS-t))s $(date +%T)"; return $rc; }
sq() { python3 -m sqltrain.cli "$@"; }
T0=$(cut -d' ' -f3 $W/t0); END=$(cat $W/end_s)
# left N: true while more than N s of the queue's budget (END_S of call 1) remain; guards optional steps
left() { [ $(( T0 + END - $(date +%s) )) -gt $1 ] || { echo "=== skip (less than $1 s left) $(date +%T)"; return 1; }; }
# waitfor SET: block until put-chunk.sh has installed that set (its models or wheels)
waitfor() { while [ ! -f $W/$1.ready ]; do sleep 3; done; echo "=== $1 ready $(date +%T)"; }
git log -1 --format='%H %s' > $L/commit.txt 2>/dev/null; git diff --stat >> $L/commit.txt 2>/dev/null
