#!/bin/sh
# Both man pages render with `man -l` and groff reports no warnings.
set -eu
cd "$(dirname "$0")/.."
status=0
for page in dist/relay25.8 dist/relay25.conf.5; do
    out=$(MANWIDTH=80 man -l "$page" 2>&1 >/dev/null) || status=1
    warn=$(groff -ww -man -Tutf8 "$page" 2>&1 >/dev/null) || status=1
    lines=$(MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
    if [ -n "$out$warn" ] || [ "$lines" -lt 50 ]; then
        echo "$page: $lines lines; $out $warn" >&2
        status=1
    fi
    echo "$page: $lines lines rendered"
done
exit $status
