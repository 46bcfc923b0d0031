# Attack 6: reach another agent, $VICTIM of the same node: find its
# processes through the host's /proc, steal its capability (from its
# environment, or its token file), and post through its mount as it.
host_proc
for env in /proc/[0-9]*/environ; do
    vars=$(tr '\0' '\n' <"$env" 2>/dev/null) || continue
    printf '%s\n' "$vars" | grep -qx "CELL0_AGENT=$VICTIM" || continue
    printf '%s\n' "$vars" | grep -qx "CELL0_ADDR=$CELL0_ADDR" || continue
    pid=${env#/proc/}
    pid=${pid%/environ}
    echo "process $pid of $VICTIM: visible"
    stolen=$(printf '%s\n' "$vars" | sed -n 's/^CELL0_TOKEN=//p')
    [ -n "$stolen" ] && echo "stolen from its environment: $stolen"
    stolen=$(cat "/proc/$pid/root/run/cell0/token" 2>/dev/null) &&
        [ -n "$stolen" ] && echo "stolen from its token file: $stolen"
    try "post as $VICTIM through process $pid's mount" \
        sh -c "echo forged >/proc/$pid/root/cell0/chan/vic/data"
done
echo done
