#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs embkv-bench in
# process (a table on the embedded defaults plus a pull/push workload).
# Usage: tools/run.sh [embkv-bench options...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

tools/install-deps.sh
tools/build.sh build
if [ $# -eq 0 ]; then
	set -- --keys 2000000 --ops 2000000 --reps 2
fi
exec build/tools/embkv-bench "$@"
