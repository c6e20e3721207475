#!/usr/bin/env bash
# The GPU path's checks on a machine with an NVIDIA GPU (issue 14): the one
# script that runs every GPU check.
#
#   tools/gpu-check.sh prepare [BUILD_DIR]   here, on a build machine with
#       nvcc: builds the CUDA flavour (BUILD_DIR, default build-cuda,
#       -DEMBKV_CUDA=ON) and gathers what the GPU machine needs into
#       build-gpu-carry/ (git-ignored, about 27 MB): bin/ (embkvd,
#       embkv-bench, the GPU tests), lib/ (libembkv, libembkv_gpu.so with
#       the CUDA runtime linked in, and every shared library they load
#       except glibc's, libstdc++ and libgcc_s) and MANIFEST.txt (commit,
#       the newest GLIBC_/GLIBCXX_ symbol versions needed, files). Fails if
#       a carried file needs a library that is neither carried nor part of
#       a plain glibc system.
#   tools/gpu-check.sh [run [STEP...]]      there, from the repository
#       root, with build-gpu-carry carried. In this order, each step under
#       its own timeout inside one time budget (GPU_CHECK_BUDGET seconds,
#       default 420 of the call's 540): the GPU tests plainly;
#       embkv-bench --mode gpu against a fresh local embkvd per run
#       (dim 64 uniform and Zipf, dim 256, one 1M-key batch for the dedup
#       bar); the kernel and pull/push tests under compute-sanitizer
#       memcheck with leak check (90 s kept back for Python); python3
#       (torch): a probe of embkv.gpu, then python/tests/test_gpu.py under
#       pytest; then racecheck, synccheck and initcheck on the kernels test
#       while time is left. STEP...: only the steps named (shell patterns,
#       e.g. run 'bench_*' python_gpu), for a second, shorter try. Files in
#       $OUT (the device tool's folder; else build-gpu-carry/out), six of
#       them: summary.txt, env.txt (machine, nvidia-smi, tools, ldd of
#       every carried file), gpu-check.log (every step's whole output),
#       sanitizer.log, bench.json (one line per bench run, with its "run"
#       name), embkvd.log. The END of stdout is a compact summary: each
#       step PASS/FAIL/SKIP with seconds and detail, the bench's figures,
#       the bars' verdicts. Exit 0 only if every step ran and passed: a
#       test that finds no device (exit 77), a GPU test pytest skipped, a
#       missing compute-sanitizer or pytest, and a step the budget left no
#       time for all count against it. A compute-sanitizer that refuses
#       the device ("Device not supported", as on gVisor machines) makes
#       its steps SKIP with that reason, tried once.
#   tools/gpu-check.sh selftest [BUILD_DIR]  here, without a GPU (ctest
#       gpu_check_selftest): gathers a carry from BUILD_DIR (default
#       build-cuda, built, not rebuilt) into a temporary folder (or takes
#       $GPU_CHECK_CARRY as it is) and runs the same flow with small sizes:
#       the kernel and pull/push tests and the bench against the host
#       stand-in plugin (tests/gpu/libembkv_gpu_host.so, under the name
#       libembkv_gpu.so), test_gpu_api and Python with the real plugin
#       (which finds no device), the sanitizer steps through a stand-in
#       that only runs the program; then checks the outputs (summary
#       lines, bench.json fields, the bars, $OUT's file names and count).
#       Exit 77 there is SKIP. Proves the plumbing, not the GPU code.
#       OUT= keeps the files. tests/gpu/gpu_check_bare.sh runs it where
#       the libraries the GPU machine may lack are hidden (root).
#
# The device tool's call: run(command="tools/gpu-check.sh run",
#   carry=["build-gpu-carry"], timeout_s=540).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 2
cmd=${1:-run}
[ $# -gt 0 ] && shift

# Libraries every glibc system has (glibc's own, the C++ runtime): never
# carried; the carried files' needs of these are GLIBC_/GLIBCXX_ versions
# (MANIFEST.txt).
base_lib() {
	case $1 in
	libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libutil.so.*|\
	libresolv.so.*|ld-linux*|linux-vdso*|libstdc++.so.*|libgcc_s.so.*) return 0 ;;
	esac
	return 1
}

# gather BUILD CARRY: the binaries, libembkv, the plugin and the shared
# libraries they load into CARRY; checks that each carried file resolves
# every library from CARRY/lib or the base set alone; writes MANIFEST.txt.
gather() {
	local b=$1 c=$2 f name path bad=0
	local bins=(server/embkvd tools/embkv-bench tests/gpu/test_gpu_kernels
		tests/gpu/test_gpu_pullpush tests/gpu/test_gpu_api
		tests/gpu/test_gpu_xxh3_nvcc)
	for f in "${bins[@]}" client/libembkv.so.0 gpu/libembkv_gpu.so; do
		if [ ! -e "$b/$f" ]; then
			echo "gpu-check: $b/$f missing (build $b with -DEMBKV_CUDA=ON)" >&2
			return 1
		fi
	done
	rm -rf "$c"
	mkdir -p "$c/bin" "$c/lib"
	for f in "${bins[@]}"; do cp "$b/$f" "$c/bin/"; done
	cp -L "$b/client/libembkv.so.0" "$b/gpu/libembkv_gpu.so" "$c/lib/"
	# ldd lists the whole closure; copy each library under the name asked
	for f in "$c"/bin/* "$c"/lib/*; do
		LD_LIBRARY_PATH="$c/lib" ldd "$f"
	done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
	while read -r name path; do
		base_lib "$name" || [ -e "$c/lib/$name" ] || cp -L "$path" "$c/lib/$name"
	done
	# the closure, as a bare environment sees it
	for f in "$c"/bin/* "$c"/lib/*; do
		env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$c/lib" ldd "$f" |
		awk -v f="$f" -v c="$c/lib/" '
			/not found/ {print f ": " $1 " not found"; next}
			$2 == "=>" && $3 ~ /^\// && index($3, c) != 1 {print f ": " $1 " " $3}' |
		while read -r line; do
			name=$(echo "$line" | awk '{print $2}')
			case $line in
			*"not found") echo "$line" ;;
			*) base_lib "$name" || echo "$line (outside the carry)" ;;
			esac
		done
	done >"$c/closure.tmp"
	if [ -s "$c/closure.tmp" ]; then
		echo "gpu-check: carried files need libraries outside the carry:" >&2
		cat "$c/closure.tmp" >&2
		bad=1
	fi
	rm -f "$c/closure.tmp"
	{
		echo "commit: $(git describe --always --dirty 2>/dev/null || echo unknown)"
		echo "gathered: $(date -u '+%Y-%m-%d %H:%M UTC') from $b"
		echo "build host: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"), $(ldd --version 2>/dev/null | head -n 1)"
		echo "needs from the system: $(needs "$c") (libc, libstdc++, libgcc_s; and the NVIDIA driver's libcuda.so.1 at run time)"
		echo "size: $(du -sk "$c" | cut -f1) KiB"
		echo "files:"
		(cd "$c" && ls -l bin lib)
	} >"$c/MANIFEST.txt"
	return $bad
}

# needs CARRY: the newest GLIBC_, GLIBCXX_ and CXXABI_ symbol versions
# the carried files ask for.
needs() {
	local v out=
	for v in GLIBC GLIBCXX CXXABI; do
		out+="$(objdump -T "$1"/bin/* "$1"/lib/* 2>/dev/null |
			grep -o "${v}_[0-9][0-9.]*" | sort -uV | tail -n 1) "
	done
	echo "${out% }"
}

if [ "$cmd" = prepare ]; then
	b=${1:-build-cuda}
	tools/build.sh "$b" -DEMBKV_CUDA=ON || exit 1
	gather "$b" build-gpu-carry || exit 1
	kib=$(du -sk build-gpu-carry | cut -f1)
	tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
	echo "gpu-check: carry build-gpu-carry: $((kib / 1024)) MiB; the working tree besides: $((tree / 1048576)) MiB (64 MiB in all may travel)"
	echo "gpu-check: $(grep '^needs' build-gpu-carry/MANIFEST.txt)"
	if [ $((kib + tree / 1024)) -gt $((60 * 1024)) ]; then
		echo "gpu-check: over 60 MiB: the device tool takes at most 64 MiB" >&2
		exit 1
	fi
	echo "gpu-check: then run(command=\"tools/gpu-check.sh run\", carry=[\"build-gpu-carry\"], timeout_s=540)"
	exit 0
fi

# The stand-in for compute-sanitizer in selftest: takes its options (each
# with a value), prints its summary lines, runs the program.
if [ "$cmd" = fake-sanitizer ]; then
	while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do
		[ $# -ge 2 ] || { echo "fake-sanitizer: $1 without a value" >&2; exit 2; }
		shift 2
	done
	[ $# -gt 0 ] || { echo "fake-sanitizer: no program" >&2; exit 2; }
	if [ -n "${GPU_CHECK_FAKE_SAN_REFUSE:-}" ]; then # as gVisor's answer
		echo "========= COMPUTE-SANITIZER"
		echo "========= Error: Device not supported. Please refer to the \"Supported Devices\" section of the sanitizer documentation"
		exit 1
	fi
	echo "========= COMPUTE-SANITIZER (gpu-check selftest stand-in: runs the program, checks nothing)"
	"$@"
	rc=$?
	echo "========= ERROR SUMMARY: 0 errors"
	exit $rc
fi

case $cmd in
run) mode=run; only=("$@") ;;
selftest) mode=selftest; only=() ;;
*) echo "usage: tools/gpu-check.sh [prepare [BUILD_DIR] | run [STEP...] | selftest [BUILD_DIR]]" >&2; exit 2 ;;
esac

tmpd=$(mktemp -d /tmp/embkv-gpu-check.XXXXXX) || { echo "gpu-check: mktemp failed" >&2; exit 2; }
daemon=
# reap PID: TERM, up to 10 s, then KILL (a stalled shutdown must not hold
# up the summary)
reap() {
	local pid=$1 i
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
cleanup() {
	[ -n "$daemon" ] && reap "$daemon"
	rm -rf "$tmpd"
}
trap cleanup EXIT

if [ $mode = run ]; then
	C=$here/build-gpu-carry
	if [ ! -x "$C/bin/test_gpu_kernels" ]; then
		echo "gpu-check: $C missing: run 'tools/gpu-check.sh prepare' on the build machine and carry build-gpu-carry" >&2
		exit 2
	fi
	out=${OUT:-$C/out}
	plugin=$C/lib/libembkv_gpu.so
	budget=${GPU_CHECK_BUDGET:-420}
else
	b=${1:-build-cuda}
	b=$(cd "$b" 2>/dev/null && pwd) || { echo "gpu-check: no build folder ${1:-build-cuda}" >&2; exit 2; }
	if [ -n "${GPU_CHECK_CARRY:-}" ]; then
		# a carry gathered already (e.g. build-gpu-carry, as it will travel)
		C=$(cd "$GPU_CHECK_CARRY" && pwd) || exit 2
	else
		C=$tmpd/carry
		gather "$b" "$C" || { echo "gpu-check selftest: FAIL (gathering the carry)"; exit 1; }
	fi
	standin=$b/tests/gpu/libembkv_gpu_host.so
	[ -f "$standin" ] || { echo "gpu-check: $standin missing" >&2; exit 2; }
	if [ -n "${OUT:-}" ]; then out=$OUT; else out=$tmpd/out; fi
	plugin=$C/lib/libembkv_gpu.so
	budget=${GPU_CHECK_BUDGET:-150}
fi
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
summary=$out/summary.txt
log=$out/gpu-check.log
sanlog=$out/sanitizer.log
envf=$out/env.txt
benchj=$out/bench.json
dlog=$out/embkvd.log
: >"$summary"; : >"$log"; : >"$sanlog"; : >"$benchj"; : >"$dlog"
# stopped from outside: what is known so far, at the end of stdout
t_start=$SECONDS
trap 'echo "gpu-check: stopped by a signal after $((SECONDS - t_start))s; summary.txt so far:"; cat "$summary"; exit 143' TERM INT
left() { echo $((budget - (SECONDS - t_start))); }
npass=0 nfail=0 nskip=0 reserve=0
failed='' hung=''
# hung_skip NAME BASE...: records NAME as not run when a step it repeats
# (BASE) timed out, which would only spend the budget again
hung_skip() {
	local n=$1 b
	shift
	for b in "$@"; do
		case " $hung " in
		*" $b "*)
			want "$n" && record SKIP "$n" 0 "not run: $b timed out, this would hang too"
			return 0 ;;
		esac
	done
	return 1
}

# want NAME: whether this run does step NAME (run STEP...: only those,
# shell patterns, e.g. 'bench_*' python_gpu; default all)
want() {
	local p
	[ ${#only[@]} = 0 ] && return 0
	for p in "${only[@]}"; do
		# shellcheck disable=SC2053
		[[ $1 == $p ]] && return 0
	done
	return 1
}

# record STATUS NAME SECONDS DETAIL: one summary line (summary.txt too).
record() {
	local line
	line=$(printf '%-4s  %-20s %4ss  %s' "$1" "$2" "$3" "$4")
	echo "$line" >>"$summary"
	case $1 in
	PASS) npass=$((npass + 1)) ;;
	FAIL) nfail=$((nfail + 1)); failed+=" $2" ;;
	*) nskip=$((nskip + 1)); [ $mode = run ] && failed+=" $2(not-run)" ;;
	esac
}

# step NAME MAXT CMD...: runs CMD under timeout (MAXT, less when the
# budget less the reserve is shorter); sets rc, dur, so (its output file),
# tmo (the timeout). rc 200: not run, no time left.
step() {
	local name=$1 max=$2 t
	shift 2
	t=$(( $(left) - reserve ))
	[ "$t" -gt "$max" ] && t=$max
	so=$tmpd/$name.out
	tmo=$t
	dur=0
	: >"$so"
	if ! want "$name"; then
		rc=201
		return
	fi
	if [ "$t" -lt 10 ]; then
		rc=200
		echo "== $name: not run, ${t}s left of the budget" >>"$log"
		return
	fi
	echo "== $name (timeout ${t}s): $*" >>"$log"
	local t0=$SECONDS
	timeout -k 10 "$t" "$@" >"$so" 2>&1 </dev/null
	rc=$?
	dur=$((SECONDS - t0))
	# the beginning and the end (verdicts, ERROR SUMMARY) of long output
	if [ "$(stat -c %s "$so" 2>/dev/null || echo 0)" -gt 524288 ]; then
		head -c 262144 "$so" >>"$log"
		echo "[... $(stat -c %s "$so") bytes, the middle left out ...]" >>"$log"
		tail -c 262144 "$so" >>"$log"
	else
		cat "$so" >>"$log"
	fi
	echo "== $name: exit $rc after ${dur}s" >>"$log"
	echo "--- $name: exit $rc after ${dur}s; its last lines:"
	tail -n 8 "$so"
}

# verdict NAME DETAIL: the summary line from rc (77 is SKIP in selftest,
# FAIL on the GPU machine).
verdict() {
	local name=$1 detail=$2
	case $rc in
	0) record PASS "$name" "$dur" "$detail" ;;
	77) if [ $mode = selftest ]; then
		record SKIP "$name" "$dur" "exit 77: no CUDA device (expected here)"
	    else
		record FAIL "$name" "$dur" "exit 77: the test found no CUDA device: $(grep -m1 'no CUDA device' "$so")${detail:+; $detail}"
	    fi ;;
	124|137) if [ $rc = 137 ] && [ "$dur" -lt "$tmo" ]; then
		record FAIL "$name" "$dur" "killed (signal 9) after ${dur}s, before its ${tmo}s timeout: out of memory?${detail:+; $detail}"
	    else
		record FAIL "$name" "$dur" "timed out after ${tmo}s (killed) $detail"
		hung+=" $name"
	    fi ;;
	200) record SKIP "$name" 0 "$(nobudget)" ;;
	201) ;; # not asked for
	*) record FAIL "$name" "$dur" "exit $rc${detail:+; $detail}; last line: $(grep -v '^[[:space:]]*$' "$so" 2>/dev/null | tail -n 1 | cut -c1-120)" ;;
	esac
}

nobudget() {
	if [ "$reserve" -gt 0 ]; then
		echo "not run: the budget's last ${reserve}s are kept for Python"
	else
		echo "not run: the time budget (${budget}s) is spent"
	fi
}

# cmocka's verdict lines: device, counts, failed tests.
cm_detail() {
	local d f
	d=$(grep -m1 -E '^device [0-9]' "$so" | cut -c1-110)
	f=$(sed -n 's/^\[  FAILED  \] \([a-z_0-9]*\)$/\1/p' "$so" | tr '\n' ' ')
	echo "$(grep -m1 -oE '^\[==========\] [0-9]+ test\(s\) run' "$so" | sed 's/.*\] //')${f:+; failed: $f}${d:+; $d}"
}

# ---------------------------------------------------------------- the environment
# C programs: the whole carry first (the library set they were built and
# tested with; only glibc, libstdc++, libgcc_s and the driver come from the
# machine). Python: only what the machine lacks (an older copy of a library
# the machine has must not shadow it for python3 and torch).
ldc=$(command -v ldconfig || echo /sbin/ldconfig)
"$ldc" -p >"$tmpd/ldcache" 2>/dev/null
syshas() { # SONAME: the loader's cache has it, and the file is there
	local p
	for p in $(awk -v n="$1" '$1 == n && /x86-64/ {print $NF}' "$tmpd/ldcache"); do
		[ -e "$p" ] && return 0
	done
	return 1
}
pydir=$tmpd/pylib
mkdir -p "$pydir"
for f in "$C"/lib/*; do
	n=$(basename "$f")
	case $n in
	libembkv*) ln -s "$f" "$pydir/$n" ;;
	*) syshas "$n" || ln -s "$f" "$pydir/$n" ;;
	esac
done
syslp=${LD_LIBRARY_PATH:-}
# the driver's libcuda.so.1, where the loader would not find it
cudadir=
if ! syshas libcuda.so.1; then
	for d in ${syslp//:/ } /usr/local/nvidia/lib64 /usr/local/nvidia/lib \
		/usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib; do
		if [ -e "$d/libcuda.so.1" ]; then cudadir=$d; break; fi
	done
fi
extra=${syslp}${cudadir:+${syslp:+:}$cudadir}
clp=$C/lib${extra:+:$extra}
plp=$pydir${extra:+:$extra}
cenv=(env "LD_LIBRARY_PATH=$clp" "EMBKV_GPU_LIB=$plugin")
if [ $mode = selftest ]; then
	# the host stand-in under the plugin's name: the tests that link
	# libembkv_gpu.so and libembkv's dlopen get the same object
	sdir=$tmpd/standin
	mkdir -p "$sdir"
	ln -s "$standin" "$sdir/libembkv_gpu.so"
	kenv=(env "LD_LIBRARY_PATH=$sdir:$clp" "EMBKV_GPU_LIB=$sdir/libembkv_gpu.so")
else
	kenv=("${cenv[@]}")
fi
# embkvd with the C programs' libraries, wherever it is started from
printf '#!/bin/sh\nLD_LIBRARY_PATH=%q exec %q "$@"\n' "$clp" "$C/bin/embkvd" >"$tmpd/embkvd"
chmod +x "$tmpd/embkvd"
penv=(env "LD_LIBRARY_PATH=$plp" "EMBKV_GPU_LIB=$plugin"
	"EMBKV_LIB=$C/lib/libembkv.so.0" "EMBKVD=$tmpd/embkvd"
	PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 "GPU_CHECK_MODE=$mode")

# compute-sanitizer: $EMBKV_SANITIZER, PATH, the toolkit's folders
if [ $mode = selftest ]; then
	san=${EMBKV_SANITIZER:-$here/tools/gpu-check.sh fake-sanitizer}
else
	san=${EMBKV_SANITIZER:-}
	if [ -z "$san" ]; then
		for s in "$(command -v compute-sanitizer 2>/dev/null)" \
			/usr/local/cuda/bin/compute-sanitizer \
			/usr/local/cuda/compute-sanitizer/compute-sanitizer \
			/usr/local/cuda-*/bin/compute-sanitizer \
			/usr/local/cuda-*/compute-sanitizer/compute-sanitizer \
			/opt/nvidia/compute-sanitizer/compute-sanitizer; do
			if [ -n "$s" ] && [ -x "$s" ]; then san=$s; break; fi
		done
	fi
fi
read -r -a sancmd <<<"$san"

# python3 with torch and numpy: $EMBKV_PYTHON, python3, the image's venv,
# Debian's
py=
for p in "${EMBKV_PYTHON:-}" python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
	[ -n "$p" ] || continue
	if timeout -k 5 60 "$p" -c 'import torch, numpy' >/dev/null 2>&1; then
		py=$(command -v "$p"); break
	fi
done
pytest=0
[ -n "$py" ] && timeout -k 5 30 "$py" -c 'import pytest' >/dev/null 2>&1 && pytest=1

smi=$(command -v nvidia-smi || echo /usr/local/nvidia/bin/nvidia-smi)
# (into files, not pipes: a process stuck in the driver would hold a pipe
# open past its timeout)
timeout -k 5 20 "$smi" --query-gpu=name,driver_version,compute_cap --format=csv,noheader >"$tmpd/smiq" 2>/dev/null
gpu_name=$(head -n 1 "$tmpd/smiq")
{
	echo "== gpu-check $mode, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), budget ${budget}s"
	echo "== machine"
	uname -a
	(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown OS}")
	ldd --version 2>&1 | head -n 1
	echo "cpus $(nproc), $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB memory"}')"
	echo "== nvidia-smi"
	timeout -k 5 20 "$smi" >"$tmpd/smi" 2>&1; head -n 25 "$tmpd/smi"
	timeout -k 5 20 "$smi" --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >"$tmpd/smi" 2>&1; cat "$tmpd/smi"
	echo "== libcuda.so.1: $(grep -m1 'libcuda\.so\.1 ' "$tmpd/ldcache" | sed 's/^[[:space:]]*//')${cudadir:+ (added from $cudadir)}"
	echo "LD_LIBRARY_PATH before: ${syslp:-(unset)}"
	echo "C programs: LD_LIBRARY_PATH=$clp"
	echo "python: LD_LIBRARY_PATH=$plp ($(ls "$pydir" | tr '\n' ' '))"
	echo "== compute-sanitizer: ${san:-not found (PATH, /usr/local/cuda*/bin, /usr/local/cuda*/compute-sanitizer)}"
	if [ -n "$san" ] && [ $mode = run ]; then
		timeout -k 5 30 "${sancmd[@]}" --version >"$tmpd/sanv" 2>&1
		tail -n 2 "$tmpd/sanv"
	fi
	echo "== python: ${py:-none with torch and numpy}; pytest: $([ $pytest = 1 ] && echo yes || echo no)"
	[ -n "$py" ] && timeout -k 5 20 "$py" --version 2>&1
	echo "== carry: $C"
	cat "$C/MANIFEST.txt" 2>/dev/null
	echo "== the carried files' libraries, as the C programs load them"
	for f in "$C"/bin/* "$C"/lib/*; do
		echo "-- $f"
		env "LD_LIBRARY_PATH=$clp" ldd "$f" 2>&1
	done
} >"$envf" 2>&1
# each library a carried file cannot find, with the file
missing=$(awk '/^== the carried files/ {on=1} on && /^-- / {f=$2} on && /not found/ {print f ": " $1}' "$envf" | sort -u | head -n 20)
echo "gpu-check $mode: ${gpu_name:-no nvidia-smi answer}; logs in $out"
[ -n "$missing" ] && printf 'gpu-check: MISSING LIBRARIES:\n%s\n' "$missing"

# Python's steps keep 90 s of the budget: what comes before them (and
# hangs) cannot take it.
[ -n "$py" ] && reserve=90

# ---------------------------------------------------------------- 1. the GPU tests
step xxh3_nvcc 60 "${cenv[@]}" "$C/bin/test_gpu_xxh3_nvcc"
verdict xxh3_nvcc "$(cm_detail)"
step api 60 "${cenv[@]}" "$C/bin/test_gpu_api"
verdict api "$(cm_detail)"
step kernels 90 "${kenv[@]}" "$C/bin/test_gpu_kernels"
verdict kernels "$(cm_detail)"
step pullpush 120 "${kenv[@]}" "$C/bin/test_gpu_pullpush"
verdict pullpush "$(cm_detail)"

# ---------------------------------------------------------------- 2. the bench
# A fresh embkvd per run (the bench's table "gpu_bench" is opened again
# if it exists, whatever its dim).
start_embkvd() { # NAME: its own output file (a shared one, truncated by
	# the child after the fork, could still show the last run's address)
	local a="" _i
	dout=$tmpd/embkvd-$1.out
	: >"$dout"
	echo "== embkvd for $1" >>"$dlog"
	"$tmpd/embkvd" --listen tcp://127.0.0.1:0 "${dflags[@]}" >>"$dout" 2>&1 &
	daemon=$!
	for _i in $(seq 150); do
		a=$(sed -n 's/^embkvd: listening on \(tcp:[^ ]*\).*/\1/p' "$dout" | head -n 1)
		[ -n "$a" ] && break
		kill -0 "$daemon" 2>/dev/null || break
		sleep 0.1
	done
	addr=$a
}
stop_embkvd() {
	reap "$daemon"
	daemon=
	cat "$dout" >>"$dlog"
}
jnum() { # LINE KEY: a number field of a flat JSON line
	sed -n "s/.*\"$2\": \(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" <<<"$1"
}
bench() { # NAME ARGS...
	local name=$1 j
	shift
	want "$name" || return
	hung_skip "$name" bench_uniform bench_zipf bench_dim256 bench_dedup1m && return
	if [ $(( $(left) - reserve )) -lt 10 ]; then
		record SKIP "$name" 0 "$(nobudget)"
		return
	fi
	start_embkvd "$name"
	if [ -z "$addr" ]; then
		stop_embkvd
		record FAIL "$name" 0 "embkvd did not start (embkvd.log)"
		return
	fi
	step "$name" 90 env "LD_LIBRARY_PATH=$clp" "EMBKV_GPU_LIB=$bplugin" \
		"$C/bin/embkv-bench" --mode gpu --servers "$addr" "$@" --json
	stop_embkvd
	j=$(grep -m1 '^{"mode": "gpu"' "$so")
	if [ -n "$j" ]; then
		echo "$j" | sed "s/^{/{\"run\": \"$name\", /" >>"$benchj"
	elif [ $rc = 0 ]; then
		rc=1
	fi
	verdict "$name" "$([ -n "$j" ] && echo "dedup_us $(jnum "$j" dedup_us), pull dev/host $(jnum "$j" pull_device_rows_s)/$(jnum "$j" pull_host_rows_s) rows/s" || echo "no JSON line")"
}
if [ $mode = run ]; then
	dflags=(--threads 8 --io-threads 4 --memory-limit 16G)
	bplugin=$plugin
	bench bench_uniform --dim 64 --batch 65536 --keys 1000000 --iters 20
	bench bench_zipf --dim 64 --batch 65536 --keys 1000000 --iters 20 --zipf 1.05
	bench bench_dim256 --dim 256 --batch 16384 --keys 1000000 --iters 20 --zipf 1.05
	bench bench_dedup1m --dim 64 --batch 1048576 --keys 4000000 --iters 2
else
	dflags=(--threads 2 --io-threads 1 --memory-limit 1G)
	bplugin=$sdir/libembkv_gpu.so
	bench bench_uniform --dim 16 --batch 4096 --keys 20000 --iters 3
	bench bench_zipf --dim 16 --batch 4096 --keys 20000 --iters 3 --zipf 1.05
	bench bench_dim256 --dim 256 --batch 1024 --keys 20000 --iters 2 --zipf 1.05
	bench bench_dedup1m --dim 16 --batch 16384 --keys 40000 --iters 2
fi

# ---------------------------------------------------------------- 3. compute-sanitizer
# san_detail: compute-sanitizer's own verdict lines.
san_detail() {
	local e l x
	e=$(grep -m1 -oE 'ERROR SUMMARY: [0-9]+ errors?' "$so")
	l=$(grep -m1 -oE 'LEAK SUMMARY: .*' "$so" | cut -c1-60)
	x=$(grep -m1 -E 'Device not supported|Internal Sanitizer Error|Unable to|Target application returned|Error: ' "$so" | sed 's/^=* *//' | cut -c1-80)
	grep -q 'selftest stand-in' "$so" && e="stand-in, nothing checked: $e"
	# initcheck reports reads inside cub's own scan kernels (a known
	# false positive: NVIDIA/cccl#2104): say how many frames are cub's
	local cub
	cub=$(grep -c 'cub::' "$so" 2>/dev/null)
	[ "${cub:-0}" -gt 0 ] && x="${x:+$x; }$cub report lines name cub:: (initcheck: see NVIDIA/cccl#2104)"
	echo "${e:-no ERROR SUMMARY line}${l:+; $l}${x:+; $x}"
}
# compute-sanitizer refuses the device on some runtimes (gVisor: "Device
# not supported", device/KINDS.md): that is no finding about the code, so
# the step is a SKIP (still not a pass) and the later ones are not tried.
san_refused=
sanstep() { # NAME BASE MAXT TOOL-ARGS... PROGRAM (BASE: the plain step)
	local name=$1 base=$2 max=$3
	shift 3
	hung_skip "$name" $base && return # BASE: one or more step names
	if [ -n "$san_refused" ]; then
		want "$name" && record SKIP "$name" 0 "not run: $san_refused"
		return
	fi
	step "$name" "$max" "${kenv[@]}" "${sancmd[@]}" --error-exitcode 3 --print-limit 30 "$@"
	[ $rc = 201 ] || { echo "== $name: $*"; cat "$so"; } >>"$sanlog"
	if [ "$rc" != 0 ] && [ "$rc" != 201 ] && [ "$rc" != 200 ] &&
		grep -q 'Device not supported' "$so"; then
		san_refused="compute-sanitizer refused this machine's device (Device not supported: no memory checker on this runtime)"
		record SKIP "$name" "$dur" "$san_refused"
		return
	fi
	verdict "$name" "$(san_detail)"
}
if [ -n "$san" ]; then
	sanstep kernels_memcheck kernels 150 --tool memcheck --leak-check full "$C/bin/test_gpu_kernels"
	sanstep pullpush_memcheck pullpush 180 --tool memcheck --leak-check full "$C/bin/test_gpu_pullpush"
else
	want memcheck && record SKIP memcheck 0 "compute-sanitizer not found (PATH, /usr/local/cuda*/bin, /usr/local/cuda*/compute-sanitizer)"
fi
reserve=0

# ---------------------------------------------------------------- 4. Python
probe_py='
import os, sys
sys.path.insert(0, "python")
import torch, embkv, embkv.gpu as gpu
p = gpu.probe()
cuda = torch.cuda.is_available()
print("libembkv:", embkv._lib.path)
print("embkv.gpu.probe():", p)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available:", cuda,
      torch.cuda.get_device_name(0) if cuda else "")
if os.environ.get("GPU_CHECK_MODE") == "run":
    assert cuda, "torch sees no CUDA device"
    assert p["status"] == 0, "embkv.gpu has no device: %s" % p["why"]
else:
    assert p["status"] in (0, -95, -19), p
print("python probe: status %d, path %s, torch cuda %s" % (p["status"], p["path"], cuda))
'
if [ -z "$py" ]; then
	want python_probe && record SKIP python_probe 0 "no python3 with torch and numpy (EMBKV_PYTHON, python3, /opt/torch/.venv/bin/python3, /usr/bin/python3)"
	want python_gpu && record SKIP python_gpu 0 "no python3 with torch and numpy"
else
	step python_probe 90 "${penv[@]}" "$py" -c "$probe_py"
	verdict python_probe "$(grep -m1 '^python probe:' "$so" | cut -c15-)"
	if [ $pytest = 0 ]; then
		want python_gpu && record SKIP python_gpu 0 "$py has no pytest: python/tests/test_gpu.py not run (python_probe ran without it)"
	else
		step python_gpu 150 "${penv[@]}" "$py" -m pytest -q -p no:cacheprovider \
			-rs python/tests/test_gpu.py
		pyline=$(grep -E '[0-9]+ (passed|failed|error)' "$so" | tail -n 1 | tr -d '=' | sed 's/^ *//')
		nodev=$(grep -c '^SKIPPED.*no CUDA device' "$so")
		if [ $rc = 201 ]; then
			:
		elif [ $rc = 0 ] && [ $mode = run ] && [ "$nodev" -gt 0 ]; then
			rc=1
			pyline="the GPU tests were skipped for lack of a device ($nodev); $pyline"
		elif [ "$nodev" -gt 0 ]; then
			pyline="$pyline (the GPU tests skip without a device)"
		fi
		verdict python_gpu "$pyline"
	fi
fi

# ---------------------------------------------------------------- 5. more sanitizer tools
if [ -n "$san" ]; then
	# (not after a memcheck of the same test that hung: the sanitizer
	# itself would hang again)
	sanstep kernels_racecheck "kernels kernels_memcheck" 90 --tool racecheck "$C/bin/test_gpu_kernels"
	sanstep kernels_synccheck "kernels kernels_memcheck" 60 --tool synccheck "$C/bin/test_gpu_kernels"
	sanstep kernels_initcheck "kernels kernels_memcheck" 90 --tool initcheck "$C/bin/test_gpu_kernels"
fi

# ---------------------------------------------------------------- the summary
# figures of bench.json, the bars' verdicts
bar() { # VALUE OP LIMIT
	[ -n "$1" ] || { echo "n/a"; return; }
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
		ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
		print ok ? "MET" : "NOT MET" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) exit; printf "%.2f", a / b }'; }
figures() {
	local j name sc d1 d1src pr ps cold
	[ -s "$benchj" ] || { echo "bench: no JSON line (bench.json is empty)"; return; }
	echo "bench (bench.json$([ $mode = selftest ] && echo '; the host stand-in: NOT GPU figures')):"
	printf '  %-14s %4s %7s %6s %6s %6s %8s %8s %8s %13s %13s\n' run dim batch distnct h2dGB d2hGB dedup_us scat_us coal_us 'pull M/s h|d' 'push M/s h|d'
	while read -r j; do
		printf '  %-14s %4s %7s %6s %6s %6s %8s %8s %8s %6s|%-6s %6s|%-6s\n' \
			"$(sed -n 's/.*"run": "\([^"]*\)".*/\1/p' <<<"$j")" \
			"$(jnum "$j" dim)" "$(jnum "$j" batch)" "$(jnum "$j" distinct_fraction)" \
			"$(jnum "$j" h2d_GBps)" "$(jnum "$j" d2h_GBps)" "$(jnum "$j" dedup_us)" \
			"$(jnum "$j" scatter_us)" "$(jnum "$j" coalesce_us)" \
			"$(awk -v v="$(jnum "$j" pull_host_rows_s)" 'BEGIN {printf "%.1f", v / 1e6}')" \
			"$(awk -v v="$(jnum "$j" pull_device_rows_s)" 'BEGIN {printf "%.1f", v / 1e6}')" \
			"$(awk -v v="$(jnum "$j" push_host_rows_s)" 'BEGIN {printf "%.1f", v / 1e6}')" \
			"$(awk -v v="$(jnum "$j" push_device_rows_s)" 'BEGIN {printf "%.1f", v / 1e6}')"
	done <"$benchj"
	echo "bars (a figure the bench prints itself, else derived as said):"
	sc=; pr=; ps=; cold=
	while read -r j; do
		name=$(sed -n 's/.*"run": "\([^"]*\)".*/\1/p' <<<"$j")
		v=$(jnum "$j" gpu_scatter_vs_gather)
		[ -n "$v" ] && sc+=" $name $v $(bar "$v" '>=' 0.7);"
		v=$(jnum "$j" device_pull_vs_host)
		[ -n "$v" ] || v=$(ratio "$(jnum "$j" pull_device_rows_s)" "$(jnum "$j" pull_host_rows_s)")
		pr+=" $name ${v:-?} $(bar "$v" '>=' 0.9);"
		v=$(jnum "$j" device_push_vs_host)
		[ -n "$v" ] || v=$(ratio "$(jnum "$j" push_device_rows_s)" "$(jnum "$j" push_host_rows_s)")
		ps+=" $name ${v:-?} $(bar "$v" '>=' 0.9);"
		v=$(jnum "$j" device_cold_pull_vs_host)
		[ -n "$v" ] && cold+=" $name $v;"
		v=$(jnum "$j" dedup_1m_us)
		if [ -n "$v" ] && [ -z "${d1:-}" ]; then d1=$v; d1src="the bench's dedup_1m_us ($name)"; fi
	done <"$benchj"
	if [ -z "${d1:-}" ]; then
		j=$(grep -m1 '"run": "bench_dedup1m"' "$benchj")
		d1=$(jnum "$j" dedup_us)
		d1src="dedup_us of bench_dedup1m, batch $(jnum "$j" batch), uniform; derived"
	fi
	echo "  gpu_scatter_vs_gather >= 0.7:${sc:- n/a (not in bench.json: the bench prints no gather bound)}"
	echo "  dedup_1m_us <= 300: ${d1:-n/a} $(bar "${d1:-}" '<=' 300) (${d1src:-})"
	echo "  device_pull_vs_host >= 0.9 (derived: pull_device/pull_host rows/s where absent):$pr"
	echo "  device_push_vs_host >= 0.9 (derived likewise):$ps"
	echo "  (no bar) device_cold_pull_vs_host, train pulls of new keys:${cold:- n/a}"
}
figures >"$tmpd/figures" 2>&1
cat "$tmpd/figures" >>"$summary"
{
	echo "machine: ${gpu_name:-nvidia-smi gave nothing}; $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"); $(ldd --version 2>/dev/null | head -n 1 | grep -oE '[0-9]+\.[0-9]+$' | sed 's/^/glibc /')"
	if [ -f "$C/MANIFEST.txt" ]; then
		echo "carry: $(sed -n 's/^commit: //p' "$C/MANIFEST.txt"), $(sed -n 's/^gathered: \(.*\) from.*/\1/p' "$C/MANIFEST.txt"); $(sed -n 's/^needs from the system: \([^(]*\) (.*/needs \1/p' "$C/MANIFEST.txt")"
	else
		echo "carry: no MANIFEST.txt (gathered by an older prepare)"
	fi
	echo "compute-sanitizer: ${san:-not found}; python: ${py:-none with torch} (pytest: $([ $pytest = 1 ] && echo yes || echo no))"
	[ -n "$missing" ] && printf 'MISSING LIBRARIES (env.txt):\n%s\n' "$missing"
} >"$tmpd/head"
total=$((npass + nfail + nskip))
if [ $mode = run ]; then
	if [ $nfail = 0 ] && [ $nskip = 0 ]; then result="PASS: all $total steps passed"
	else result="FAIL: $npass of $total steps passed; failed or not run:$failed"; fi
else
	if [ $nfail = 0 ]; then result="selftest steps: $npass passed, $nskip skipped, 0 failed"
	else result="FAIL: selftest steps failed:$failed"; fi
fi

# selftest: the plumbing's own checks
if [ $mode = selftest ]; then
	bad=
	for s in xxh3_nvcc api kernels pullpush bench_uniform bench_zipf \
		bench_dim256 bench_dedup1m kernels_memcheck pullpush_memcheck \
		python_probe python_gpu kernels_racecheck kernels_synccheck \
		kernels_initcheck; do
		grep -qE "^(PASS|FAIL|SKIP) +$s " "$summary" || bad+=" no summary line for $s;"
	done
	[ "$(grep -c '"mode": "gpu"' "$benchj")" = 4 ] || bad+=" bench.json has not 4 lines;"
	for k in run pull_host_rows_s pull_device_rows_s push_host_rows_s push_device_rows_s dedup_us scatter_us h2d_GBps; do
		[ "$(grep -c "\"$k\": " "$benchj")" = 4 ] || bad+=" bench.json lacks $k;"
	done
	grep -qE 'device_pull_vs_host >= 0.9 .*: bench_uniform [0-9.]+ (MET|NOT MET);' "$summary" ||
		bad+=" no device_pull_vs_host verdict;"
	grep -qE 'dedup_1m_us <= 300: [0-9.]+ (MET|NOT MET)' "$summary" || bad+=" no dedup_1m_us verdict;"
	grep -qE '^PASS +kernels +[0-9]+s +[0-9]+ test\(s\) run' "$summary" || bad+=" kernels (stand-in) did not pass;"
	n=0
	for f in "$out"/* "$out"/*/*; do
		[ -e "$f" ] || continue
		n=$((n + 1))
		[[ $(basename "$f") =~ ^[A-Za-z0-9._-]+$ ]] || bad+=" odd file name $f;"
	done
	[ $n -le 8 ] || bad+=" $n files in \$OUT (the device tool brings back 8);"
	[ -z "$missing" ] || bad+=" missing libraries;"
	if [ -n "$bad" ]; then result="FAIL: selftest plumbing:$bad; $result"; nfail=$((nfail + 1))
	else result="$result; plumbing checks OK (summary lines, bench.json fields, bars, \$OUT files)"; fi
fi

echo
echo "==== gpu-check $mode summary ($((SECONDS - t_start))s of a ${budget}s budget; files in $out: $(cd "$out" && ls | tr '\n' ' '))"
cat "$tmpd/head" "$summary"
echo "RESULT: $result"
{ echo; cat "$tmpd/head"; echo "RESULT: $result"; } >>"$summary"
[ $nfail = 0 ] && { [ $mode = selftest ] || [ $nskip = 0 ]; }
