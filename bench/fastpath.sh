#!/usr/bin/env bash
# fastpath.sh: instructions per round of the fast-path probe
# (shared/tools/fastpath.c, counted by shared/tools/fastpath-ir.sh under
# callgrind) for glibc, ptm and whichever of jemalloc, tcmalloc and mimalloc
# are installed, in the four modes pair, mixed, calloc and realloc.  Prints a
# table (counts, and ratios to glibc) and writes fastpath.txt and
# fastpath.csv to the output directory.  Instruction counts do not depend on
# load, so the runs go in parallel, one per CPU.
#
# usage: bench/fastpath.sh [--ptm=LIBPTM.so] [--out=DIR] [--tools=DIR]
#   defaults: src/.libs/libptm.so, bench/results, ../shared/tools (from the
#   project root); CC compiles the probe (default cc).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ptm=$root/src/.libs/libptm.so
out=$here/results
tools=$root/../shared/tools
for arg in "$@"; do
    case $arg in
        --ptm=*) ptm=${arg#--ptm=} ;;
        --out=*) out=${arg#--out=} ;;
        --tools=*) tools=${arg#--tools=} ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fastpath.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

for f in "$tools/fastpath-ir.sh" "$tools/fastpath.c"; do
    [ -f "$f" ] || { echo "fastpath.sh: $f not found (shared/ beside the project?)" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "fastpath.sh: valgrind not installed" >&2; exit 1; }
[ -f "$ptm" ] || { echo "fastpath.sh: $ptm not found: build ptm first (make)" >&2; exit 1; }

find_lib() {
    local d
    for d in /usr/lib/*-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
        [ -f "$d/$1" ] && { echo "$d/$1"; return; }
    done
}

names=(glibc ptm)
libs=("" "$(cd "$(dirname "$ptm")" && pwd)/$(basename "$ptm")")
for pair in jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4 mimalloc:libmimalloc.so.2; do
    lib=$(find_lib "${pair#*:}")
    if [ -n "$lib" ]; then
        names+=("${pair%%:*}"); libs+=("$lib")
    else
        echo "fastpath.sh: ${pair%%:*} not installed (${pair#*:}), left out" >&2
    fi
done
modes=(pair mixed calloc realloc)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${CC:-cc}" -O2 -o "$work/fastpath" "$tools/fastpath.c"

# One job per (mode, allocator), at most one per CPU at a time.
jobs=$(nproc 2>/dev/null || echo 1)
running=0
for m in "${modes[@]}"; do
    for i in "${!names[@]}"; do
        ( bash "$tools/fastpath-ir.sh" "$work/fastpath" "$m" ${libs[$i]:+"${libs[$i]}"} \
              > "$work/$m.${names[$i]}" 2> "$work/$m.${names[$i]}.err" \
          || echo FAIL > "$work/$m.${names[$i]}" ) &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
    done
done
wait

mkdir -p "$out"
{
    echo "fast path: instructions per round under callgrind (ratio to glibc); lower is better"
    echo
    printf '%-8s' mode
    for n in "${names[@]}"; do printf ' %14s' "$n"; done
    echo
    for m in "${modes[@]}"; do
        base=$(tr -d '[:space:]' < "$work/$m.glibc")
        printf '%-8s' "$m"
        for n in "${names[@]}"; do
            v=$(tr -d '[:space:]' < "$work/$m.$n")
            if [ "$n" = glibc ] || ! [[ $v =~ ^[0-9]+$ && $base =~ ^[1-9][0-9]*$ ]]; then
                printf ' %14s' "${v:-FAIL}"
            else
                printf ' %14s' "$v ($(awk -v a="$v" -v b="$base" 'BEGIN { printf "%.2f", a / b }'))"
            fi
        done
        echo
    done
} | tee "$out/fastpath.txt"

{
    echo "mode,allocator,instructions_per_round"
    for m in "${modes[@]}"; do
        for n in "${names[@]}"; do
            echo "$m,$n,$(tr -d '[:space:]' < "$work/$m.$n")"
        done
    done
} > "$out/fastpath.csv"
echo "fastpath.sh: wrote fastpath.txt and fastpath.csv to $out" >&2
if grep -qx FAIL "$work"/*.glibc "$work"/*.ptm 2>/dev/null; then
    for f in "$work"/*.err; do [ -s "$f" ] && { echo "== ${f##*/}" >&2; tail -n 5 "$f" >&2; }; done
    exit 1
fi
exit 0
