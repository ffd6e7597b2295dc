#!/bin/sh
# notes-importer.sh: a Pattern Sync program for the "exec-importer" pattern (protocol 1), in
# plain POSIX sh. See docs/exec-patterns.md.
#
# Imports every *.txt file of a folder as one item (key: the file name; value: its first line and
# its size), keeps how many runs it made in the saved state, and answers "rate_limited" while the
# folder holds a .lock file (its content: the seconds to wait). With the option
# "wait_for_lock": true it waits for the lock to go instead (and is stopped at its timeout if the
# lock never goes).
#
#   trayapp charms add exec-importer --name Notes \
#     --settings-json '{"command": "/path/to/notes-importer.sh", "options": {"folder": "/home/me/notes"}}'
#
# A toy JSON reader: options are found with sed, so keep folder names free of double quotes.
set -eu

request=$(cat)  # one JSON object: {"protocol": 1, "settings": {...}, "state": ..., ...}
folder=$(printf '%s\n' "$request" | sed -n 's/.*"folder": *"\([^"]*\)".*/\1/p')
runs=$(printf '%s\n' "$request" | sed -n 's/.*"runs": *\([0-9][0-9]*\).*/\1/p')
runs=${runs:-0}

if [ -z "$folder" ] || [ ! -d "$folder" ]; then
    echo '{"type": "error", "kind": "config_error", "message": "the option folder must name an existing folder"}'
    exit 0
fi

if [ -e "$folder/.lock" ]; then
    case $request in
    *'"wait_for_lock": true'*)
        echo "waiting for $folder/.lock to go" >&2
        while [ -e "$folder/.lock" ]; do sleep 5; done
        ;;
    *)
        wait=$(cat "$folder/.lock")
        printf '{"type": "error", "kind": "rate_limited", "retry_after": %s, "message": "the folder is locked by its writer"}\n' "${wait:-60}"
        exit 0
        ;;
    esac
fi

json_text() {  # stdin -> the text escaped for a JSON string (first line only)
    head -n 1 | tr -d '\r\t' | sed 's/\\/\\\\/g; s/"/\\"/g'
}

set -- "$folder"/*.txt
[ -e "$1" ] || set --
total=$#
count=0
echo "importing $total notes from $folder" >&2
for file in "$@"; do
    key=$(basename "$file" | json_text)
    title=$(json_text < "$file")
    size=$(wc -c < "$file" | tr -d ' ')
    printf '{"type": "item", "key": "%s", "value": {"title": "%s", "bytes": %s}}\n' "$key" "$title" "$size"
    count=$((count + 1))
    printf '{"type": "progress", "done": %s, "total": %s, "unit": "notes"}\n' "$count" "$total"
done
printf '{"type": "state", "value": {"runs": %s}}\n' "$((runs + 1))"
printf '{"type": "report", "message": "%s notes"}\n' "$total"
