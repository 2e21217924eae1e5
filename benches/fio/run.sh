#!/usr/bin/env bash
# fio's io_uring engine (and psync) on the same page-cached file the `uring` criterion
# bench reads, so docs/BENCHMARKS.md can put tally_uring::Ring beside fio.
#
#   benches/fio/run.sh                 # 3 reps x 4 s per job
#   REPS=1 RUNTIME=2 benches/fio/run.sh
#
# Needs fio (`apt-get install -y fio`); prints a skip line and exits 0 without it.
set -euo pipefail
FILE="${TALLY_URING_BENCH_FILE:-/tmp/tally-uring-bench/read.dat}"
REPS="${REPS:-3}"
RUNTIME="${RUNTIME:-4}"
SIZE_MB=256

if ! command -v fio >/dev/null 2>&1; then
    echo "skip: fio is not installed (apt-get install -y fio)"
    exit 0
fi
mkdir -p "$(dirname "$FILE")"
if [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" != "$((SIZE_MB << 20))" ]; then
    dd if=/dev/urandom of="$FILE" bs=1M count="$SIZE_MB" status=none
fi

job() { # name, extra fio args...
    local name="$1"; shift
    cat "$FILE" >/dev/null # warm the page cache
    fio --name="$name" --filename="$FILE" --size="${SIZE_MB}M" --rw=randread --bs=4k \
        --invalidate=0 --time_based --runtime="$RUNTIME" --ramp_time=1 --cpus_allowed=0 \
        --output-format=json "$@" |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

printf "| fio job | reps | IOPS per rep | median IOPS |\n|---|---|---|---|\n"
for spec in "psync_qd1:--ioengine=psync --iodepth=1" \
            "io_uring_qd1:--ioengine=io_uring --iodepth=1" \
            "io_uring_qd32:--ioengine=io_uring --iodepth=32" \
            "io_uring_qd32_fixed:--ioengine=io_uring --iodepth=32 --fixedbufs --registerfiles"; do
    name="${spec%%:*}"; args="${spec#*:}"
    vals=()
    for _ in $(seq "$REPS"); do
        # shellcheck disable=SC2086
        vals+=("$(job "$name" $args)")
    done
    # Median: the middle value, or the mean of the middle two for an even REPS.
    median=$(printf "%s\n" "${vals[@]}" | sort -n |
        awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2}')
    printf "| %s | %s | %s | %s |\n" "$name" "$REPS" "${vals[*]}" "$median"
done
