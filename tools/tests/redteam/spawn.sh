# Attack 7: a parent under limits makes a sub-agent and lifts the sub-
# agent's limits through its ctl, then starts it ($KID_EXEC forks).
ctl() { printf '%s\n' "$2" >"$M/agent/$1/ctl"; }
try "spawn kid" ctl "$CELL0_AGENT" "spawn kid"
try "exec" ctl kid "exec $KID_EXEC"
try "limit pids=max mem=max cpu=max" ctl kid "limit pids=max mem=max cpu=max"
try "start" ctl kid start
echo done
exec sleep 600
