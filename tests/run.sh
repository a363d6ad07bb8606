#!/bin/bash
# Guest side of `make check`: runs every tests/NN-*.sh in order and prints one
# TAP stream (numbered here; the files print `ok - name` lines).
# Optional argument: run only the files whose name contains it.
cd "$(dirname "$0")"
filter=${1:-}
echo "TAP version 13"
n=0
for f in [0-9][0-9]-*.sh; do
  [ -n "$filter" ] && ! [[ $f == *$filter* ]] && continue
  echo "# $f"
  t0=$SECONDS
  while IFS= read -r line; do
    if [[ $line =~ ^(not\ )?ok\ -\ (.*)$ ]]; then
      n=$((n + 1))
      echo "${BASH_REMATCH[1]}ok $n ${BASH_REMATCH[2]}"
    else
      echo "$line"
    fi
  done < <(bash "$f" 2>&1)
  echo "# $f took $((SECONDS - t0)) s"
done
echo "1..$n"
