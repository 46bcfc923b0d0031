# Attack 5: the host's processes through the host's /proc beneath the
# sandbox's: write $MARK into the memory of $TARGET_PID (a sleep(1) of
# the test's, at the lowest address of its stack, where nothing lives),
# and reach the owner's FUSE mount of the tree ($OWNER_MOUNT, mounted on
# the host) through /proc/<node>/root.
host_proc
if [ -r "/proc/$TARGET_PID/maps" ]; then
    echo "host process $TARGET_PID: visible"
else
    echo "host process $TARGET_PID: hidden"
fi
python3 -u - <<'PY'
import os
pid = os.environ["TARGET_PID"]
try:
    with open(f"/proc/{pid}/maps") as maps:
        start = next(int(l.split("-")[0], 16) for l in maps if l.rstrip().endswith("[stack]"))
    fd = os.open(f"/proc/{pid}/mem", os.O_RDWR)
    os.pwrite(fd, os.environ["MARK"].encode(), start)
    print("write its memory: ok", flush=True)
except (OSError, StopIteration) as e:
    print(f"write its memory: refused ({e})", flush=True)
PY
for p in "$NODE_PID" 1; do
    try "mkdir through the owner's mount via /proc/$p/root" \
        mkdir "/proc/$p/root$OWNER_MOUNT/chan/pwned-$p"
done
echo done
