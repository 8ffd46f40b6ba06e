#!/usr/bin/env bash
# Measures the data mover against rsync (daemon mode on 127.0.0.1) and a raw
# tar-over-TCP pipe on the same generated data, all over loopback, and prints
# the ratios the design asks for. Page cache is warm (data just generated);
# `sync` runs before every timed step so earlier writeback does not skew it.
# A mover copy ends with the data durable (syncfs) and verified on both sides;
# rsync and the pipe are timed up to a `sync` after them, so all three times
# mean "durable on the destination" (rsync's time without it is printed too).
#
# Every copy goes to a directory never used before, and trees are deleted
# only after the copies they could slow down: on ext4 without a journal (as
# here) inode allocation skips inodes freed in the last 60 s (360 s while
# their table block is dirty), one by one, so a copy started right after
# `rm -rf` of 100k files pays up to ~3x per create.
#
# Sections 1 and 2 run the mover, rsync, rsync over TLS and the limits on the same data (the
# destination filesystem's own local copy, a raw TCP pipe) interleaved, RUNS times (default
# 3), and report each median ratio with min and max, and the CPU seconds (user+sys, both
# ends) the mover, rsync and cp -a took: on one machine both movers share its cores.
#
# Knobs: RUNS (3), MIXED_MIB (1024), SMALL_FILES (100000), SMALL_RUNS (RUNS), BIG_GIB (10),
# SKIP_BIG=1, SECTIONS ("1 2 3 4": which of the numbered measurements to run).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIXED_MIB=${MIXED_MIB:-1024}
SMALL_FILES=${SMALL_FILES:-100000}
RUNS=${RUNS:-3}
SMALL_RUNS=${SMALL_RUNS:-$RUNS}
BIG_GIB=${BIG_GIB:-10}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-mover.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && { pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; } || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v rsync >/dev/null || ! command -v pkill >/dev/null || [ ! -x /usr/bin/time ]; then
	apt-get update -qq && apt-get install -y -qq rsync time procps >/dev/null
fi
(cd "$ROOT" && go build -o "$WORK/bt" ./pkg/mover/internal/benchtool)
BT="$WORK/bt"
"$BT" mover certs --out "$WORK/certs" >/dev/null
C="$WORK/certs"
RECV_TLS=(--ca "$C/ca.crt" --cert "$C/server.crt" --key "$C/server.key")
SEND_TLS=(--ca "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
PORT=18731

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
mbps() { awk -v n="$1" -v t="$2" 'BEGIN{printf "%.0f", n/t/1048576}'; }
# fresh DST: an empty destination, everything written so far durable, and the copies made
# so far out of the page cache (kept on disk, see above): each copy starts from the same
# state — the source cached, little else — instead of paying to reclaim the earlier copies'
# pages (which made cp -a's own CPU time vary 0.7-3.3 s for the same tree).
fresh() {
	rm -rf "$1"
	mkdir -p "$1"
	sync
	local old=("$WORK"/d.*)
	[ -e "${old[0]}" ] && "$BT" evict "${old[@]}"
	return 0
}
bytes_of() { du -sb --apparent-size "$1" | cut -f1; }
# TIMED FILE CMD...: runs CMD, writing its CPU seconds (user+sys, its waited-for children
# included) to FILE; in the background, $! is time's PID and CMD its child.
TIMED=(/usr/bin/time -f "%U %S" -o)
cpu() { awk '{s += $1 + $2} END {printf "%.2f", s}' "$@"; }
# Peak resident memory a mover reported in its last progress line (VmHWM), in MiB.
peak_mib() { grep -o '"peakRSSBytes": *[0-9]*' "$1" | tail -1 | awk -F: '{printf "%.0f", $2/1048576}'; }
peaks() { echo "peak RSS: sender $(peak_mib "$WORK/send.log") MiB, receiver $(peak_mib "$WORK/recv.log") MiB"; }

start_receiver() { # DST LOG
	"${TIMED[@]}" "$WORK/cpu.recv" "$BT" mover receive --dir "$1" --listen "127.0.0.1:$PORT" "${RECV_TLS[@]}" --progress-interval 10s >"$2" 2>&1 &
	RECV_PID=$!
	PIDS+=("$RECV_PID")
	sleep 0.2
}

mover_copy() { # SRC DST -> seconds
	fresh "$2"
	start_receiver "$2" "$WORK/recv.log"
	local t0 t1
	t0=$(now)
	"${TIMED[@]}" "$WORK/cpu.send" "$BT" mover send --dir "$1" --to "127.0.0.1:$PORT" "${SEND_TLS[@]}" --progress-interval 10s >"$WORK/send.log" 2>&1
	t1=$(now)
	wait "$RECV_PID"
	echo "$(cpu "$WORK/cpu.send" "$WORK/cpu.recv")s (sender $(cpu "$WORK/cpu.send")s, receiver $(cpu "$WORK/cpu.recv")s)" >"$WORK/cpu.mover"
	secs "$t0" "$t1"
}

rsync_copy() { # SRC DST [PORT] -> seconds; PORT is where the rsync client connects
	local port=${3:-$((PORT + 1))}
	fresh "$2"
	cat >"$WORK/rsyncd.conf" <<CONF
use chroot = no
[dst]
path = $2
read only = no
uid = root
gid = root
CONF
	"${TIMED[@]}" "$WORK/cpu.rsyncd" rsync --daemon --no-detach --address=127.0.0.1 --port=$((PORT + 1)) --config="$WORK/rsyncd.conf" &
	local d=$!
	PIDS+=("$d")
	sleep 0.3
	local t0 t1
	t0=$(now)
	"${TIMED[@]}" "$WORK/cpu.rsyncc" rsync -aHS --numeric-ids "$1/" "rsync://127.0.0.1:$port/dst/"
	secs "$t0" "$(now)" >"$WORK/rsync-nosync"
	sync # durable, as the mover's copy is when it exits (it syncfs'es and verifies)
	t1=$(now)
	pkill -P "$d" 2>/dev/null || true # the daemon, time's child
	wait "$d" 2>/dev/null || true
	cpu "$WORK/cpu.rsyncc" "$WORK/cpu.rsyncd" >"$WORK/cpu.rsync"
	secs "$t0" "$t1"
}

# rsync as VolSync runs it: through a TLS tunnel (here TLS 1.3 with mutual auth, the
# mover's own certificates, in two relay processes like stunnel's two ends).
rsync_tls_copy() { # SRC DST -> seconds
	"$BT" tls-relay server "127.0.0.1:$((PORT + 3))" "127.0.0.1:$((PORT + 1))" "$C" &
	local s=$!
	"$BT" tls-relay client "127.0.0.1:$((PORT + 4))" "127.0.0.1:$((PORT + 3))" "$C" &
	local c=$!
	PIDS+=("$s" "$c")
	sleep 0.2
	rsync_copy "$1" "$2" $((PORT + 4))
	kill "$s" "$c"
	wait "$s" "$c" 2>/dev/null || true
}

# The destination filesystem's own speed: a local copy, durable.
local_copy() { # SRC DST -> seconds
	fresh "$2"
	local t0
	t0=$(now)
	"${TIMED[@]}" "$WORK/cpu.cp" cp -a "$1/." "$2/"
	sync
	secs "$t0" "$(now)"
}

# stats RATIO... -> "median (min, max, n runs)"
stats() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		printf "%.2fx median (min %.2fx, max %.2fx, %d runs)", m, a[1], a[NR], NR}'
}

# compare NAME SRC RUNS: the mover against rsync+sync, rsync over TLS+sync and
# the limits (the destination filesystem's local copy, a raw TCP pipe),
# interleaved run by run on the same data; prints every time and the median
# ratios (peer time / mover time: above 1 the mover is faster).
compare() {
	local name=$1 src=$2 runs=$3 i tm tr tt tl tp cm cr
	local -a vr=() vt=() vl=() vp=()
	for i in $(seq 1 "$runs"); do
		tm=$(mover_copy "$src" "$WORK/d.m$i")
		cm=$(cat "$WORK/cpu.mover")
		echo "RESULT $name run $i $(peaks)"
		tr=$(rsync_copy "$src" "$WORK/d.r$i")
		cr=$(cat "$WORK/cpu.rsync")
		tt=$(rsync_tls_copy "$src" "$WORK/d.t$i")
		tl=$(local_copy "$src" "$WORK/d.l$i")
		tp=$(pipe_copy "$src" "$WORK/d.p$i")
		echo "run $i: mover ${tm}s | rsync+sync ${tr}s (alone $(cat "$WORK/rsync-nosync")s) | rsync over TLS+sync ${tt}s | local cp -a+sync ${tl}s | tar|tcp+sync ${tp}s"
		echo "run $i CPU (user+sys, both ends): mover ${cm} | rsync ${cr}s | cp -a $(cpu "$WORK/cpu.cp")s"
		vr+=("$(ratio "$tr" "$tm")")
		vt+=("$(ratio "$tt" "$tm")")
		vl+=("$(ratio "$tl" "$tm")")
		vp+=("$(ratio "$tp" "$tm")")
	done
	echo "RESULT $name mover/rsync = $(stats "${vr[@]}")"
	echo "RESULT $name mover/rsync-over-TLS = $(stats "${vt[@]}")"
	echo "RESULT $name mover/local-copy = $(stats "${vl[@]}")"
	echo "RESULT $name mover/raw-pipe = $(stats "${vp[@]}")"
	# Deleted only now: ext4 slows inode allocation after a large delete (see above).
	rm -rf "$WORK"/d.*
}

pipe_copy() { # SRC DST -> seconds
	fresh "$2"
	("$BT" pipe-recv "127.0.0.1:$((PORT + 2))" | tar -C "$2" -xf -) &
	local r=$!
	local t0 t1
	t0=$(now)
	tar -C "$1" -cf - . | "$BT" pipe-send "127.0.0.1:$((PORT + 2))"
	wait "$r"
	sync
	t1=$(now)
	secs "$t0" "$t1"
}

wait_phase() { # STATUSFILE PHASE
	for _ in $(seq 1 6000); do
		grep -q "\"phase\": \"$2\"" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "timeout waiting for $2" >&2
	return 1
}

continuous_start() { # SRC DST
	fresh "$2"
	rm -f "$WORK/status.json"
	: >"$WORK/finish" # empty until asked, like the agent's downward API file
	start_receiver "$2" "$WORK/recv.log"
	"$BT" mover send --dir "$1" --to "127.0.0.1:$PORT" "${SEND_TLS[@]}" --continuous \
		--rescan-interval 1h --finish-file "$WORK/finish" --status-file "$WORK/status.json" \
		--progress-interval 200ms >"$WORK/send.log" 2>&1 &
	SEND_PID=$!
	PIDS+=("$SEND_PID")
	wait_phase "$WORK/status.json" Syncing
	sleep 1
	sync
}

continuous_finish() { # sets TF: seconds from finish request to verified exit
	local t0 t1
	t0=$(now)
	date -u +%Y-%m-%dT%H:%M:%SZ >"$WORK/finish" # as the agent's annotation: the quiesce start
	wait "$SEND_PID"
	t1=$(now)
	wait "$RECV_PID"
	TF=$(secs "$t0" "$t1")
}

section() { [[ " ${SECTIONS:-1 2 3 4 5} " == *" $1 "* ]]; }
sizes=(1)
[ "${SKIP_BIG:-0}" = 1 ] || sizes+=("$BIG_GIB")

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
echo "disk: $(df -h --output=source,fstype,size "$WORK" | tail -1 | tr -s ' ') ($(lsblk -dno NAME,ROTA,TYPE 2>/dev/null | tr '\n' ';'))"
echo

# 1. Initial copy of a mixed tree.
if section 1; then
	"$BT" gen-mixed "$WORK/mixed" "$MIXED_MIB"
	N=$(bytes_of "$WORK/mixed")
	echo "== initial copy, mixed tree, $((N >> 20)) MiB apparent, $(find "$WORK/mixed" | wc -l) entries (targets: >= 2x rsync, >= 0.8x local copy)"
	compare mixed "$WORK/mixed" "$RUNS"
	rm -rf "$WORK/mixed" "$WORK"/d.*
	echo
fi

# 2. 100k small files: initial copy, then a final sync with nothing changed.
if section 2; then
	"$BT" gen-small "$WORK/small" "$SMALL_FILES"
	echo "== $SMALL_FILES small files ($(($(bytes_of "$WORK/small") >> 20)) MiB) (target: >= 3x rsync)"
	[ "$SMALL_RUNS" -gt 0 ] && compare small-files "$WORK/small" "$SMALL_RUNS"
	continuous_start "$WORK/small" "$WORK/d.c"
	continuous_finish
	echo "RESULT final sync, nothing changed, $SMALL_FILES files: ${TF}s (target < 0.5 s; includes rescan, fsync, verification on both sides)"
	rm -rf "$WORK/small" "$WORK"/d.*
	echo
fi

# 3. Update copy: 10 MiB changed inside a 1 GiB and a BIG_GIB volume.
if section 3; then
	for g in "${sizes[@]}"; do
		"$BT" gen-volume "$WORK/vol" "$g"
		continuous_start "$WORK/vol" "$WORK/d"
		times=()
		for i in 1 2 3; do
			times+=("$("$BT" change "$WORK/vol" "$WORK/d" "seg00$i" 10)")
			sleep 0.5
		done
		continuous_finish
		echo "RESULT update copy, 10 MiB changed in a ${g} GiB volume: ${times[*]} s (target < 2 s, flat in volume size); final sync ${TF}s"
		rm -rf "$WORK/vol" "$WORK/d"
	done
fi

# 4. Final sync with 10 MiB changed just before it (not yet replicated), in the
# running sender (the agent's normal case), beside a cold restart: the sender
# was lost, a new one starts after the app stopped, the receiver kept running.
if section 4; then
	for g in "${sizes[@]}"; do
		"$BT" gen-volume "$WORK/vol" "$g"
		continuous_start "$WORK/vol" "$WORK/d"
		"$BT" change "$WORK/vol" - seg001 10
		continuous_finish
		warm=$TF
		continuous_start "$WORK/vol" "$WORK/d2"
		kill -9 "$SEND_PID"
		wait "$SEND_PID" 2>/dev/null || true
		"$BT" change "$WORK/vol" - seg002 10
		sync
		date -u +%Y-%m-%dT%H:%M:%SZ >"$WORK/finish"
		t0=$(now)
		"$BT" mover send --dir "$WORK/vol" --to "127.0.0.1:$PORT" "${SEND_TLS[@]}" --continuous \
			--finish-file "$WORK/finish" --progress-interval 10s >"$WORK/send-cold.log" 2>&1
		cold=$(secs "$t0" "$(now)")
		wait "$RECV_PID"
		echo "RESULT final sync, 10 MiB changed in a ${g} GiB volume: running sender ${warm}s (target < 1 s, flat), cold restart ${cold}s"
		rm -rf "$WORK/vol" "$WORK/d" "$WORK/d2"
	done
fi

# 5. Memory: a 20 GiB sparse file (1 GiB of data in 64 extents), copied whole.
# The bound the pod limits are made from (docs/mover.md, "Memory").
if section 5; then
	mkdir -p "$WORK/sparse"
	truncate -s 20G "$WORK/sparse/disk.img"
	for i in $(seq 0 63); do
		dd if=/dev/urandom of="$WORK/sparse/disk.img" bs=1M count=16 seek=$((i * 320)) conv=notrunc status=none
	done
	tm=$(mover_copy "$WORK/sparse" "$WORK/d.s")
	echo "== 20 GiB sparse file, $(du -sm "$WORK/sparse" | cut -f1) MiB of data"
	echo "RESULT sparse 20 GiB: mover ${tm}s, $(peaks)"
	rm -rf "$WORK/sparse" "$WORK/d.s"
fi

