#!/usr/bin/env bash
# Runs the Python package's tests with Debian's python3 (the one that sees
# python3-numpy, python3-torch and python3-pytest; a pyenv python3 earlier
# on PATH does not). EMBKV_LIB and EMBKVD name the library and server to
# test (ctest sets them; default: the build/ tree). Exit 77: skipped.
# Usage: python/run_tests.sh [pytest args...]
#        python/run_tests.sh --example [dlrm_click.py args...]
#        (runs examples/dlrm_click.py instead: exit 1 unless its loss fell)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${EMBKV_PYTHON:-/usr/bin/python3}
if [ ! -x "$py" ]; then
	echo "python tests skipped: no $py (tools/install-deps.sh installs it)"
	exit 77
fi
for m in numpy torch pytest; do
	if ! "$py" -c "import $m" 2>/dev/null; then
		echo "python tests skipped: $py has no module $m" \
		     "(tools/install-deps.sh installs python3-$m)"
		exit 77
	fi
done
cd "$here"
if [ "${1:-}" = "--example" ]; then
	shift
	exec "$py" ../examples/dlrm_click.py "$@"
fi
exec "$py" -m pytest -q -p no:cacheprovider tests "$@"
