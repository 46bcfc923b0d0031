# What every red-team agent starts with: redteam.rs puts this file after
# the #! line and before the agent's own script (see redteam.rs).

# An older runner's shim says on the agent's standard error (which its
# log shares with standard output) that the tree is mounted, in pieces,
# as the program starts: let it finish, so that no line of ours is cut
# by it.
sleep 0.3

# The agent's capability: in a file only it can read (the sandbox of
# issue 17), or, on older runners, in its environment.
TOKEN=$(cat "$CELL0_TOKEN_FILE" 2>/dev/null || printf %s "$CELL0_TOKEN")
# Where the tree is mounted for it.
M=${CELL0_MOUNT:-/cell0}

# try LABEL COMMAND...: run COMMAND quietly; say "LABEL: ok" if it
# succeeded, "LABEL: refused" if not. The tests look for ": ok".
try() {
    label=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "$label: ok"
    else
        echo "$label: refused"
    fi
}

# host_proc: unmount the sandbox's own /proc, once, to get at whatever
# /proc lies beneath it (the host's, on a runner that mounted the
# sandbox's over it).
host_proc() {
    if umount -l /proc 2>/dev/null; then
        echo "umount /proc: ok"
    else
        echo "umount /proc: refused"
    fi
}

# fork_many N: fork up to N processes that each sleep two minutes, and
# say how many forks succeeded ("forked K of N"). The children become
# sleep(1) at once, so that they hold next to no memory.
fork_many() {
    python3 -u - "$1" <<'PY'
import os, sys
want, made = int(sys.argv[1]), 0
for _ in range(want):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            os.execv("/bin/sleep", ["sleep", "120"])
        finally:
            os._exit(1)
    made += 1
print(f"forked {made} of {want}", flush=True)
PY
}
