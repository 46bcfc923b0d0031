# Attack 5: the host's settings. Change the hostname to $NEW_HOSTNAME,
# set the clock (to the time it is: harmless), and write $SYSCTL_VALUE
# to /proc/sys/$SYSCTL. The test restores whatever changed.
try "hostname" hostname "$NEW_HOSTNAME"
python3 -u - <<'PY'
import ctypes, os, socket, time
try:
    socket.sethostname(os.environ["NEW_HOSTNAME"])
    print("sethostname: ok", flush=True)
except OSError as e:
    print(f"sethostname: refused ({e.strerror})", flush=True)

class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]

libc = ctypes.CDLL(None, use_errno=True)
now = time.clock_gettime_ns(time.CLOCK_REALTIME)
ts = Timespec(now // 10**9, now % 10**9)
if libc.clock_settime(time.CLOCK_REALTIME, ctypes.byref(ts)) == 0:
    print("clock_settime: ok", flush=True)
else:
    print(f"clock_settime: refused ({os.strerror(ctypes.get_errno())})", flush=True)
PY
set_sysctl() { printf '%s\n' "$SYSCTL_VALUE" >"/proc/sys/$SYSCTL"; }
try "sysctl $SYSCTL" set_sysctl
host_proc
try "sysctl $SYSCTL through the host's /proc" set_sysctl
echo done
