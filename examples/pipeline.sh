#!/usr/bin/env bash
# A two-stage pipeline wired with Cell0 channels, using only shell tools on a
# mounted tree (see chan(3)):
#
#   producer --> /chan/raw --> upper-casing stage --> /chan/upper --> consumer
#
# Usage: examples/pipeline.sh [MOUNTED-TREE]    (default ./cell)
#
# Start a tree first, e.g. `cell0 up` in another terminal, or
# `cell0 serve & mkdir -p cell && cell0 mount cell`.
#
# Channel semantics this relies on: each write(2) to data is one message;
# a reader gets every message, from the oldest still retained, in order (a
# channel is a log: reading removes nothing); a read blocks at the end of an
# open channel; once the channel is closed (`close` on its ctl) readers get
# what is left and then end of file. Because messages stay in the channel,
# the stages may start in any order. (To share a channel's messages among
# several workers instead, read a consumer group: see chan(3).)
set -euo pipefail

tree=${1:-./cell}
if [ ! -f "$tree/status" ] || [ ! -d "$tree/chan" ]; then
  echo "pipeline.sh: $tree is not a mounted Cell0 tree (start one with 'cell0 up')" >&2
  exit 1
fi
chan=$tree/chan

for c in raw upper; do
  if [ -e "$chan/$c" ]; then
    echo "pipeline.sh: $chan/$c exists already; remove it with 'rm -r $chan/$c' and run again" >&2
    exit 1
  fi
done

# Remove the channels on any exit, and stop stages still running.
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$chan/raw" "$chan/upper"
}
trap cleanup EXIT

mkdir "$chan/raw" "$chan/upper"

# Consumer: print every message that reaches /chan/upper. cat ends at end of
# file, which comes once the stage closes the channel and it is drained.
cat "$chan/upper/data" &
pids+=($!)

# Stage: receive from raw, send upper-cased to upper, one message per line.
# cat is not useless here: bash's `read` on a file that looks regular reads
# ahead and seeks back over what it did not use, and a channel's data is a
# stream that cannot seek; from a pipe it takes one byte at a time. Each
# echo opens data, writes once and closes: one message.
{
  # shellcheck disable=SC2002
  cat "$chan/raw/data" | while IFS= read -r line; do
    echo "$line" | tr '[:lower:]' '[:upper:]' > "$chan/upper/data"
  done
  echo close > "$chan/upper/ctl"
} &
pids+=($!)

# Producer: one message per line, then close raw so the stage sees the end.
for word in alpha beta gamma delta; do
  echo "$word from the producer" > "$chan/raw/data"
done
echo close > "$chan/raw/ctl"

wait "${pids[@]}"
pids=()
echo "pipeline.sh: done; raw and upper are removed on exit" >&2
