#!/usr/bin/env bash
# Two agents wired by a channel, one allowed only to read it, and a third
# that reads it too but tries to post to it and is halted (see agent(3)):
#
#   producer (intent w /chan/jobs) --> /chan/jobs --> consumer (intent r /chan/jobs)
#                                                 \-> greedy (intent r /chan/jobs; writes: drift)
#
# Usage: examples/agents.sh [MOUNTED-TREE]    (default ./cell)
#
# Start a tree first with `cell0 up` in another terminal: its node runs
# the agents (the runner needs root on most hosts, for namespaces). Each
# agent is a shell script in a scratch directory; the runner starts it in
# a sandbox of its own, where the tree is mounted at /cell0 with a
# capability that reaches only what its intent says.
set -euo pipefail

tree=${1:-./cell}
if [ ! -f "$tree/status" ] || [ ! -d "$tree/agent" ]; then
  echo "agents.sh: $tree is not a mounted Cell0 tree (start one with 'cell0 up')" >&2
  exit 1
fi
for p in chan/jobs agent/producer agent/consumer agent/greedy; do
  if [ -e "$tree/$p" ]; then
    echo "agents.sh: $tree/$p exists already; remove it and run again" >&2
    exit 1
  fi
done

work=$(mktemp -d)
cleanup() {
  for a in producer consumer greedy; do
    [ -e "$tree/agent/$a" ] && echo kill > "$tree/agent/$a/ctl" 2>/dev/null || true
  done
  for a in producer consumer greedy; do
    rm -r "$tree/agent/$a" 2>/dev/null || true
  done
  rm -r "$tree/chan/jobs" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/producer.sh" <<'EOF'
#!/bin/sh
# Post a job every half second.
n=0
while :; do n=$((n+1)); echo "job $n" > /cell0/chan/jobs/data; sleep 0.5; done
EOF
cat > "$work/consumer.sh" <<'EOF'
#!/bin/sh
# Take each job as it comes; what it prints goes to its log.
while read -r job; do echo "done: $job"; done < /cell0/chan/jobs/data
EOF
cat > "$work/greedy.sh" <<'EOF'
#!/bin/sh
# Reads a job, then tries to post one of its own: outside its intent.
read -r job < /cell0/chan/jobs/data
echo "more work" > /cell0/chan/jobs/data
EOF
chmod +x "$work"/*.sh

mkdir "$tree/chan/jobs"
mkdir "$tree/agent/producer" "$tree/agent/consumer" "$tree/agent/greedy"
printf '%s\n' "exec $work/producer.sh" 'intent w /chan/jobs' \
  'restart policy=always' start > "$tree/agent/producer/ctl"
printf '%s\n' "exec $work/consumer.sh" 'intent r /chan/jobs' \
  'restart policy=always' start > "$tree/agent/consumer/ctl"
printf '%s\n' "exec $work/greedy.sh" 'intent r /chan/jobs' start > "$tree/agent/greedy/ctl"

# Wait (up to 10 s) for three jobs done and the greedy agent halted.
state() { awk -v k="$2" '$1==k {print $2}' "$tree/agent/$1/status"; }
for _ in $(seq 100); do
  if [ "$(grep -c '^done: ' "$tree/agent/consumer/log")" -ge 3 ] &&
    [ "$(state greedy state)" = halted-drift ]; then
    break
  fi
  sleep 0.1
done

echo "== consumer: $(state consumer state) (intent: $(cat "$tree/agent/consumer/intent"))"
grep '^done: ' "$tree/agent/consumer/log" | head -3
echo "== greedy: $(state greedy state)"
grep '^drift ' "$tree/agent/greedy/status"
echo "== greedy's trace"
cat "$tree/agent/greedy/trace"
[ "$(state greedy state)" = halted-drift ] && [ "$(grep -c '^done: ' "$tree/agent/consumer/log")" -ge 3 ]
