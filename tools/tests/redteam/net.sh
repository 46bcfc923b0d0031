# Attack 4: reach the host's network from an agent whose intent grants
# none. The test listens on 127.0.0.1:$TCP_PORT, on the abstract unix
# socket @$ABSTRACT and on the unix socket $UNIX_PATH, and counts who
# connects.
PROBE=$(
    cat <<'PY'
import os, socket, sys
where = sys.argv[1]

def attempt(what, fn):
    try:
        fn()
        print(f"{what} via {where}: ok", flush=True)
    except OSError as e:
        print(f"{what} via {where}: refused ({e.strerror or e})", flush=True)

def tcp():
    port = int(os.environ["TCP_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"red team\n")

def unix(address):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(address)

def by_path():
    path = os.environ["UNIX_PATH"]
    try:
        unix(path)
    except OSError:
        unix("/proc/1/root" + path)

attempt("tcp", tcp)
attempt("abstract", lambda: unix("\0" + os.environ["ABSTRACT"]))
attempt("unix", by_path)
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close())
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close())
PY
)
python3 -u -c "$PROBE" "its own namespace"

# Every other network namespace it can name: enter it and try again.
# First those of every thread it sees (the shim's FUSE threads, once),
# then, through the host's /proc, those of every process of the host.
seen=$(readlink /proc/self/ns/net)
enter_all() {
    for ns in "$@"; do
        id=$(readlink "$ns" 2>/dev/null) || continue
        case " $seen " in *" $id "*) continue ;; esac
        seen="$seen $id"
        timeout 10 nsenter --net="$ns" python3 -u -c "$PROBE" "$ns" 2>/dev/null ||
            echo "enter $ns: refused"
    done
}
enter_all /proc/[0-9]*/task/[0-9]*/ns/net
host_proc
enter_all /proc/[0-9]*/ns/net
echo done
