# Hold: leave processes behind in every way a shell can, each with the
# argument $MARK (so the test finds them by command line, even without
# an environment): sleepers, and a read parked on the tree's mount (a
# process in a FUSE request, which only its server's answer or the
# mount's end releases). Then wait.
sleep "$MARK" &
setsid sleep "$MARK" &
nohup sleep "$MARK" >/dev/null 2>&1 &
env -i /bin/sleep "$MARK" &
(
    trap '' TERM HUP INT
    exec sleep "$MARK"
) &
( (sleep "$MARK" &) &)
(setsid sh -c "sleep $MARK & exec sleep $MARK" &)
python3 -c 'import sys; open(sys.argv[1]).read()' "$M/chan/in/data" "$MARK" &
echo done
wait
