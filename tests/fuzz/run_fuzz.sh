#!/bin/sh
# Runs a libFuzzer target for a bounded time: new inputs go to a scratch directory (the repo's
# corpus is read, never written), seeds come from the other directories given.
# Args: FUZZER SECONDS DICT CORPUS_DIR [SEED_DIR...]
set -u
fuzzer=$1; seconds=$2; dict=$3; shift 3
scratch=$(mktemp -d /tmp/remora-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
# Crash reproducers land in the build directory, where a failing CI run can keep them.
# An empty dictionary file means none (libFuzzer refuses an empty one).
dict_flag=""
[ -s "$dict" ] && dict_flag="-dict=$dict"
# libFuzzer exits 77 on a crash by default, which meson reads as a skip: make it a failure.
"$fuzzer" -max_total_time="$seconds" -error_exitcode=1 -timeout_exitcode=1 $dict_flag -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="${MESON_BUILD_ROOT:-.}/" "$scratch" "$@"
