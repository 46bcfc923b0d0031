# Hands its capability to an accomplice outside: standard output is the
# agent's log, which the test reads as the node's owner. Then it parks a
# read on a channel its intent allows (/chan/$WAIT_CHAN, default in) and
# says how the read ended.
echo "token $TOKEN"
echo reading
head -n 1 "$M/chan/${WAIT_CHAN:-in}/data" >/dev/null 2>&1
echo "read returned $?"
echo done
exec sleep 600
