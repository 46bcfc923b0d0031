# Attack 9: output as fast as it can for five seconds. Then a few
# "done" lines, a second apart, so that one reaches the log whatever
# the runner drops while it catches up.
echo start
timeout 5 yes "flood flood flood flood flood flood flood flood flood flood flood flood flood"
for _ in 1 2 3 4 5 6; do
    sleep 1
    echo done
done
exec sleep 600
