#!/bin/sh
# Guest on the bridge: wait (up to about 2 minutes) for the other VM to answer, ping it
# 3 times, then stay up a while so that the other VM, if it booted later, can ping us.
# (busybox ping -c N sends N pings whatever -w says, so waiting needs a loop.)
n=0
until ping -c 1 -W 1 "$1" >/dev/null 2>&1; do
    n=$((n + 1))
    [ "$n" -lt 120 ] || break
done
ping -c 3 -W 5 "$1" || exit 1
sleep 30
