#!/bin/sh
# The test guests need an assembler and linker (binutils, with gcc as the driver).
for t in gcc ld objcopy; do
	command -v "$t" >/dev/null 2>&1 || {
		echo "tests: $t not found; install it: apt-get install gcc binutils" >&2
		exit 1
	}
done
