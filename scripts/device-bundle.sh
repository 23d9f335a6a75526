#!/usr/bin/env bash
# Builds what a run on the 16-core device needs (it has no Rust toolchain)
# into bin-device/ (ignored by git), with the script that runs it there:
#
#   bash scripts/device-bundle.sh          # here: builds, ~3 minutes
#   # then, with the device tool: carry ["bin-device"], command
#   #   bash bin-device/run.sh             # there: writes its results to $OUT
#
# What run.sh does, in one call (issue 13 item 6, issue 14's sweep): the
# pipeline and layer sweeps at 1/2/4/8/15 threads (equal total queues, the
# SDK and tracing-opentelemetry in the same processes), the full audit, and
# the anchor bench (../shared/anchors/anchor-bench) beside them, each with
# a time limit so that one slow part cannot eat the others' device time.
set -euo pipefail

root=$(git rev-parse --show-toplevel)
cd "$root"
out="$root/bin-device"
anchor="$root/../shared/anchors/anchor-bench"

# No debug info: the binaries travel (the device call carries 64 MiB).
export CARGO_PROFILE_RELEASE_DEBUG=0
cargo build --release -p xtask
rm -rf "$out"
mkdir -p "$out"
cp target/release/xtask "$out/xtask"

if [ -d "$anchor" ]; then
    # Built from a copy, into our target directory: the shared folder stays
    # as it is.
    tmp=$(mktemp -d)
    cp -r "$anchor" "$tmp/anchor-bench"
    CARGO_TARGET_DIR="$root/target/anchor-bench" \
        cargo build --release --manifest-path "$tmp/anchor-bench/Cargo.toml"
    cp "$root/target/anchor-bench/release/anchor-bench" "$out/anchor-bench"
    rm -rf "$tmp"
else
    echo "device-bundle: no $anchor; the bundle runs without the anchor bench" >&2
fi

cat >"$out/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs on the device (see scripts/device-bundle.sh). Results go to $OUT
# (or bin-device/out when $OUT is not set).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
res="${OUT:-$here/out}"
mkdir -p "$res"
{
    date -u
    nproc
    grep -m1 'model name' /proc/cpuinfo || true
    cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || true
    uptime
} >"$res/machine.txt" 2>&1
run() { # name, limit in seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date -u +%T))" >>"$res/log.txt"
    timeout "$limit" "$@" >"$res/$name.txt" 2>&1
    echo "exit $? ($(date -u +%T))" >>"$res/log.txt"
}
cd "$here"
run sweep-pipeline 150 ./xtask sweep --only pipeline --threads 1,2,4,8,15 --reps 3 --out "$res/sweep-pipeline"
# The same with a sustained load (every thread makes spans for 250 ms on
# both sides): the delivered rate where a small queue overflows.
run sweep-pipeline-sustained 60 ./xtask sweep --only pipeline --threads 1,2,4,8,15 --for 250 --reps 2 --out "$res/sweep-pipeline-sustained"
run sweep-layer 100 ./xtask sweep --only layer --threads 1,2,4,8,15 --reps 1 --out "$res/sweep-layer"
if [ -x ./anchor-bench ]; then
    run anchor 120 ./anchor-bench 1,2,4,8,15 500000
    ONLY_TRACING=1 run anchor-tracing 60 ./anchor-bench 1,2,4,8,15 400000
fi
run audit 100 ./xtask audit --quick
uptime >>"$res/machine.txt"
EOF
chmod +x "$out/run.sh"
du -sh "$out"/*
echo "device-bundle: ready in $out (carry [\"bin-device\"], run: bash bin-device/run.sh)"
