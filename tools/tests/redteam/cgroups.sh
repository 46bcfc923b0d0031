# Attack 7: lift its own limits from inside. It waits for the test's go
# (a line on /chan/go, once the test has noted the limits), then writes
# "no limit" to every limit file of its cgroups it can find, through the
# host's cgroup mounts and through cgroup file systems it mounts itself;
# then forks as many processes as it can.
echo ready
head -n 1 "$M/chan/go/data" >/dev/null 2>&1
LIFT=$(
    cat <<'PY'
import os, sys
UNLIMITED = {
    "pids.max": "max",
    "memory.max": "max",
    "memory.limit_in_bytes": "-1",
    "memory.memsw.limit_in_bytes": "-1",
    "cpu.max": "max",
    "cpu.cfs_quota_us": "-1",
}
roots = sys.argv[1:]
if not roots:
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        if right.split(" ")[0] in ("cgroup", "cgroup2"):
            roots.append(left.split(" ")[4])
paths = {line.rstrip("\n").split(":", 2)[2] for line in open("/proc/self/cgroup")}

def lift(d):
    for name, value in UNLIMITED.items():
        f = os.path.join(d, name)
        if not os.path.exists(f):
            continue
        try:
            with open(f, "w") as out:
                out.write(value)
            print(f"lift {f}: ok", flush=True)
        except OSError as e:
            print(f"lift {f}: refused ({e.strerror})", flush=True)

for root in roots:
    for path in sorted(paths):
        # Only its own cgroups ("/" in a cgroup namespace, /cell0/... on
        # the host's hierarchy) and their ancestors up to /cell0: what
        # else the runner's host has is none of this test's business.
        if path == "/":
            lift(root)
            continue
        if not path.startswith("/cell0/"):
            continue
        while path != "/":
            lift(root + path)
            if path == "/cell0":
                break
            path = os.path.dirname(path)
PY
)
python3 -u -c "$LIFT"
for fs in cgroup2 cgroup:pids cgroup:memory; do
    d=$(mktemp -d 2>/dev/null) || d=/tmp/redteam-cgroup-$$
    mkdir -p "$d" 2>/dev/null
    case $fs in
    cgroup2) mount -t cgroup2 none "$d" 2>/dev/null ;;
    *) mount -t cgroup -o "${fs#cgroup:}" none "$d" 2>/dev/null ;;
    esac
    if [ $? -eq 0 ]; then
        echo "mount $fs: ok"
        python3 -u -c "$LIFT" "$d"
        umount -l "$d"
    else
        echo "mount $fs: refused"
    fi
    rmdir "$d" 2>/dev/null
done
fork_many 100
echo done
exec sleep 600
