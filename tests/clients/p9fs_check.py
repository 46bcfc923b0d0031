#!/usr/bin/env python3
"""Drive a Cell0 tree with p9fs, a 9P client this project did not write.

Any server of the tree passes: the hosted node or the kernel.

Usage: p9fs_check.py HOST PORT VERSION [ANAME]
  VERSION: 9P2000, 9P2000.u or 9P2000.L; ANAME: what to attach, such as
  "token=c0.…" to present a capability (see cap(3)).
Prints one line per check; exits non-zero on the first failure.
"""
import os
import sys

from p9fs import P9FileSystem


def main():
    host, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    aname = sys.argv[4] if len(sys.argv) > 4 else ""
    fs = P9FileSystem(host=host, port=port, username="p9fs", version=version, aname=aname)

    # The fsspec interface, as p9fs's users call it.
    top = sorted(os.path.basename(p.rstrip("/")) for p in fs.ls("/", detail=False))
    assert "chan" in top and "status" in top, top
    print("fsspec ls('/'):", " ".join(top))
    text = fs.cat("status")
    assert text.startswith(b"node ") and text.endswith(b"\n"), text
    assert fs.cat("/status").startswith(b"node "), "a leading slash"
    size = fs.info("status")["size"]
    assert size > 0, fs.info("status")
    print("fsspec cat('status'):", len(text), "bytes; info size", size)
    with fs.open("status", "rb") as f:
        assert f.read().startswith(b"node ")
    fchan = "chan/fs" + version.replace(".", "")
    fs.mkdir(fchan, exist_ok=True)
    fs.mkdir(fchan, exist_ok=True)
    try:
        fs.mkdir(fchan, create_parents=False)
    except Exception as e:  # an existing name is EEXIST
        assert "exist" in str(e) or "17" in str(e), e
    else:
        raise AssertionError("mkdir of an existing channel succeeded")
    fs.pipe(fchan + "/data", b"piped by fsspec")
    msgs = fs.cat(fchan + "/status")
    assert b"retained 1\n" in msgs, msgs
    print("fsspec mkdir(exist_ok=True) twice, pipe:", fchan, "retained 1")

    names = sorted(os.path.basename(p.rstrip("/")) for p in fs.ls("", detail=False))
    for want in ["chan", "ctl", "events", "proof", "status"]:
        assert want in names, names
    print("ls /:", " ".join(names))

    def read(path, size=8192):
        # One Tread: p9fs's own _read loops until a zero-length read, and
        # a channel's data file blocks instead (one message per read).
        f = fs._open_fid(path, os.O_RDONLY)
        try:
            return fs.client._read(f.fid, 0, min(size, f.iounit)).data
        finally:
            fs._release_fid(f)

    def write(path, data):
        f = fs._open_fid(path, os.O_WRONLY)
        try:
            return fs._write(data, 0, f)
        finally:
            fs._release_fid(f)

    status = read("status").decode()
    assert status.startswith("node "), status
    print("status:", status.splitlines()[0])

    proof = read("proof/boot").decode()
    assert proof and all(l.startswith("#") for l in proof.splitlines()), proof
    print("proof/boot:", proof.splitlines()[0])

    chan = "chan/py" + version.replace(".", "")
    fs.mkdir(chan, create_parents=False)
    files = sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(chan, detail=False))
    assert files == ["ctl", "data", "groups", "msgs", "status"], files
    print("mkdir", chan, "->", " ".join(files))

    assert write(chan + "/data", b"from p9fs") == 9
    got = read(chan + "/data")
    assert got == b"from p9fs", got
    print("data round trip:", got.decode())
    line = read(chan + "/msgs").decode()
    assert line.startswith("seq=1 ") and " verified=yes " in line, line
    print("msgs:", line.split(" verified=")[0][:60], "... verified=yes")

    try:
        write(chan + "/ctl", b"qoss rate=1\n")
    except Exception as e:  # py9p raises its own RpcError
        text = str(e)
        if version == "9P2000.u":
            # The node's own message (and its errno).
            assert 'unknown verb "qoss"' in text, text
        if version == "9P2000":
            # The C library's words for EINVAL, which Unix clients map.
            assert "Invalid argument" in text, text
        print("bad ctl refused:", text)
    else:
        raise AssertionError("a bad ctl write succeeded")

    for gone in [chan, fchan]:
        remove(fs, version, gone)
        left = [os.path.basename(p) for p in fs.ls("chan", detail=False)]
        assert os.path.basename(gone) not in left, left
        print("removed", gone)
    print("p9fs", version, "ok")


def remove(fs, version, chan):
    """Remove channel directory CHAN."""
    if version == "9P2000.L":
        # p9fs's rmdir sends Tunlinkat without AT_REMOVEDIR, which a
        # directory refuses (EISDIR) as unlinkat(2) does; send what
        # Linux's rmdir sends.
        at_removedir = 0x200
        parent = fs.fids.acquire()
        try:
            fs.client._walk(fs.client.ROOT, parent.fid, ["chan"])
            fs.client._unlinkat(parent.fid, os.path.basename(chan), at_removedir)
        finally:
            fs.client._clunk(parent.fid)
            fs.fids.release(parent)
    else:
        fs.rm(chan)


if __name__ == "__main__":
    main()
