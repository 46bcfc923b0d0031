# Forks as many processes as it may (up to $FORKS, default 100), says
# how many, and stays.
fork_many "${FORKS:-100}"
echo done
exec sleep 600
