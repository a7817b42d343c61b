#!/bin/sh
# Turns a program's --help text into a man page (roff), so the page says exactly what
# --help says: help-to-man.sh PROGRAM SECTION SUMMARY OUTPUT.gz
set -eu
program=$1 section=$2 summary=$3 output=$4
name=$(basename "$program")
help=$("$program" --help 2>&1 || true)
{
  printf '.TH %s %s "" "EMP %s" "Elastic Memory Platform"\n' "$(echo "$name" | tr a-z A-Z)" "$section" "${EMP_VERSION:-}"
  printf '.SH NAME\n%s \\- %s\n' "$name" "$summary"
  printf '.SH DESCRIPTION\n.nf\n'
  # Backslashes doubled; a leading dot or quote would be read as a request.
  printf '%s\n' "$help" | sed -e 's/\\/\\\\/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
  printf '.fi\n.SH SEE ALSO\nThe documentation in /usr/share/doc/emp (README.md and docs/).\n'
} | gzip -9n > "$output"
