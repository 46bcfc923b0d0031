# Attack 8: fill the tree with agents, by mkdir in /agent in a loop, up
# to $TRIES; stop at the first refusal.
made=0
i=0
while [ "$i" -lt "${TRIES:-100}" ]; do
    i=$((i + 1))
    if mkdir "$M/agent/flood-$i" 2>/dev/null; then
        made=$((made + 1))
    else
        echo "mkdir flood-$i: refused"
        break
    fi
done
echo "made $made"
echo done
exec sleep 600
