#!/bin/sh
# run-every COMMAND [ARG...]
#
# Runs COMMAND now and then again every HALODB_INTERVAL_SECONDS seconds (default 300), counted
# from the end of one run to the start of the next, until the container is stopped.
# The image's default command is `run-every halodb AUTO /config/appsettings.json`.
#
# A failed run is reported and the loop goes on: the next run is the retry.
# On SIGTERM/SIGINT (docker stop) a run in progress is allowed to finish, then the loop exits 0;
# a stop during the pause between runs exits at once.
set -u

if [ "$#" -eq 0 ]; then
    echo "usage: run-every COMMAND [ARG...]" >&2
    exit 2
fi

interval="${HALODB_INTERVAL_SECONDS:-300}"
case "$interval" in
    '' | *[!0-9]*)
        echo "run-every: HALODB_INTERVAL_SECONDS must be a whole number of seconds, not '$interval'" >&2
        exit 2
        ;;
esac

stopping=0
trap 'stopping=1' TERM INT

while [ "$stopping" -eq 0 ]; do
    "$@" &
    child=$!
    # `wait` returns early when a trapped signal arrives; keep waiting until the run has ended.
    wait "$child"
    status=$?
    while kill -0 "$child" 2>/dev/null; do
        wait "$child"
        status=$?
    done
    if [ "$status" -ne 0 ]; then
        echo "run-every: '$*' exited with status $status" >&2
    fi
    [ "$stopping" -eq 0 ] || break
    sleep "$interval" &
    pause=$!
    wait "$pause"
    kill "$pause" 2>/dev/null
done
echo "run-every: stopped" >&2
exit 0
