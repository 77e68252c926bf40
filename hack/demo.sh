#!/usr/bin/env bash
# hack/demo.sh — the local two-site Deich demo behind `make demo` and `make demo-down`.
#
#   hack/demo.sh up     start two sites (sh-kiel, mv-schwerin), install Deich at both, share
#                       the citizen service account buergerkonto from sh-kiel, take sh-kiel
#                       dark and show mv-schwerin taking over; leaves the sites running
#   hack/demo.sh down   stop everything `up` started and remove $DEMO_DIR
#
# How it works: `up` builds hack/demo (the "sites" program) and starts it in the background.
# That program runs one local control plane per site — etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok with one fake node, so pods are scheduled
# and become Ready (no container runs) — and writes an admin kubeconfig per site. Everything
# after that is done here with plain kubectl, as you would with two real clusters: install
# Deich from config/, give each manager a token of its ServiceAccount, connect the sites with
# peer Secrets and ReplicationPeers, apply the shared RecoveryObjective, deploy the service at
# sh-kiel and declare it a SharedService. The sites program starts a site's manager, and takes
# a site dark, when asked through a request file in $DEMO_DIR/control (see hack/demo/main.go).
#
# Environment:
#   DEMO_DIR        where kubeconfigs, logs and control-plane data live (default: <repo>/.demo)
#   LOCALBIN        where the control-plane binaries are (default: <repo>/bin)
#   KWOK            the kwok binary (default: the newest $LOCALBIN/kwok-v*, built by `make demo`)
#   MANAGER         the Deich manager binary (default: $LOCALBIN/manager, built by `make build`)
#   KUBECTL         the kubectl binary (default: $LOCALBIN/kubectl, built by `make demo-tools`
#                   at the Kubernetes version of the sites; a kubectl on PATH is never used)
#   DEMO_SITES_BIN  where the sites program is built (default: $LOCALBIN/deich-demo-sites)
#   DEMO_TIMEOUT    seconds to wait for the sites to come up (default: 180)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCALBIN="$(realpath -m "${LOCALBIN:-$REPO_ROOT/bin}")"
MANAGER="$(realpath -m "${MANAGER:-$LOCALBIN/manager}")"
SITES_BIN="$(realpath -m "${DEMO_SITES_BIN:-$LOCALBIN/deich-demo-sites}")"
if [ -z "${KWOK:-}" ]; then
	KWOK="$(find "$LOCALBIN" -maxdepth 1 -name 'kwok-v*' 2>/dev/null | sort -V | tail -n 1)"
	KWOK="${KWOK:-$LOCALBIN/kwok}"
fi
KWOK="$(realpath -m "$KWOK")"
KUBECTL="$(realpath -m "${KUBECTL:-$LOCALBIN/kubectl}")"
# How the status tells a user to run kubectl: relative to the repository when it is in it.
KUBECTL_SHOWN="${KUBECTL#"$REPO_ROOT"/}"
DEMO_TIMEOUT="${DEMO_TIMEOUT:-180}"
GO="${GO:-go}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# DEMO_DIR must be absolute: it ends up in kubeconfig paths, and `down` recognises the demo's
# processes by it appearing in their command lines.
DEMO_DIR="$(realpath -m "${DEMO_DIR:-$REPO_ROOT/.demo}")"
case "$DEMO_DIR" in
	/ | "$HOME" | "$REPO_ROOT" | "$LOCALBIN")
		echo "refusing to use DEMO_DIR=$DEMO_DIR: 'down' deletes it" >&2
		exit 1
		;;
esac

SITES=(sh-kiel mv-schwerin)
PRIMARY=sh-kiel
STANDBY=mv-schwerin
NS=buergerkonto
SERVICE=buergerkonto
LOGS="$DEMO_DIR/logs"
CONTROL="$DEMO_DIR/control"
PIDFILE="$DEMO_DIR/sites.pid"
READY="$DEMO_DIR/ready"
SAMPLES="$REPO_ROOT/config/samples"
# How often the failover is sampled with kubectl.
POLL=0.5

# say prints one step of the story with a timestamp.
say() { printf '[%s] %s\n' "$(date +%H:%M:%S.%2N)" "$*"; }

# indent prefixes command output so it stands apart from the steps.
indent() { sed 's/^/    /'; }

# other_site prints the peer of a site.
other_site() { if [ "$1" = sh-kiel ]; then echo mv-schwerin; else echo sh-kiel; fi; }

# kc runs kubectl against one site: kc <site> <kubectl args...>
# kubectl's discovery cache goes into $DEMO_DIR too, so that `down` leaves nothing behind.
kc() {
	local site=$1
	shift
	"$KUBECTL" --kubeconfig="$DEMO_DIR/$site.kubeconfig" --cache-dir="$DEMO_DIR/kube-cache" "$@"
}

# is_dark succeeds if the demo has taken the site dark.
is_dark() { [ -e "$CONTROL/dark.$1.done" ]; }

# now_s prints the time in seconds since the epoch, with nanoseconds.
now_s() { date +%s.%N; }

# ts_s converts an RFC 3339 timestamp to seconds since the epoch.
ts_s() { date -d "$1" +%s.%N; }

# dur_s converts a Go duration (2m0s, 1.5s, 250ms) to seconds.
dur_s() {
	awk -v d="$1" 'BEGIN {
		t = 0
		while (match(d, /^[0-9.]+(h|ms|m|s|us|ns)/)) {
			part = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
			n = part + 0; u = part; sub(/^[0-9.]+/, "", u)
			f = (u == "h") ? 3600 : (u == "m") ? 60 : (u == "s") ? 1 : (u == "ms") ? 0.001 : (u == "us") ? 0.000001 : 0.000000001
			t += n * f
		}
		print t
	}'
}

# calc evaluates an arithmetic expression with fractions: calc '1.5 - 0.2' -> 1.300
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# le succeeds if $1 <= $2 (numbers with fractions).
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# secs formats seconds for the story: 12.345 -> 12.3s
secs() { awk -v s="$1" 'BEGIN { printf "%.1fs", s }'; }

# sites_pid prints the PID of the running sites program of this DEMO_DIR, or fails.
sites_pid() {
	local pid
	[ -f "$PIDFILE" ] || return 1
	pid="$(cat "$PIDFILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	# Guard against a recycled PID: it must still be our program, for this DEMO_DIR. (Right
	# after this run started it, it may not have exec'd yet; then being alive is enough.)
	is_demo_process "$pid" || { [ "$STARTED" = 1 ] && kill -0 "$pid" 2>/dev/null; } || return 1
	echo "$pid"
}

# is_demo_process succeeds if PID is alive and its command line names $DEMO_DIR.
is_demo_process() {
	local args
	args="$(ps -o args= -p "$1" 2>/dev/null)" || return 1
	[[ " $args " == *" $DEMO_DIR/"* || " $args " == *"=$DEMO_DIR/"* || " $args " == *"=$DEMO_DIR "* ]]
}

# demo_processes lists "<pid> <name>" of every process the demo starts (control planes, kwok,
# managers, the sites program) whose command line names $DEMO_DIR — the demo's processes, even
# if the sites program that started them was killed. The directory is passed through the
# environment so that awk's own command line does not match.
demo_processes() {
	ps -eo pid=,args= |
		DIR="$DEMO_DIR" MGR="$(basename "$MANAGER")" awk '
			{
				n = split($2, parts, "/"); name = parts[n]
				line = $0 " "
				if (name != "etcd" && name != "kube-apiserver" && name != "kube-controller-manager" &&
					name != "kube-scheduler" && name !~ /^kwok/ && name != "deich-demo-sites" &&
					name != ENVIRON["MGR"] && name != "manager") next
				if (index(line, ENVIRON["DIR"] "/") || index(line, "=" ENVIRON["DIR"] " ")) print $1, name
			}'
}

# wait_gone waits up to $2 seconds for PID $1 to exit.
wait_gone() {
	local pid=$1 deadline=$((SECONDS + $2))
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# stop_pids sends SIGTERM to the given PIDs, waits up to $1 seconds for all of them to exit,
# then kills what is left.
stop_pids() {
	local timeout=$1 pid
	shift
	kill -TERM "$@" 2>/dev/null || true
	local deadline=$((SECONDS + timeout))
	for pid in "$@"; do
		wait_gone "$pid" $((deadline > SECONDS ? deadline - SECONDS : 0)) && continue
		say "Killing pid $pid, which did not stop within ${timeout}s"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 5 || true
	done
}

# stop_all stops the sites program (which stops everything it started), then any process of
# this demo that is still left, for example after the sites program was killed.
stop_all() {
	local pid name stopped=0
	if pid="$(sites_pid)"; then
		say "Stopping the sites program (pid $pid): managers first, then both control planes"
		kill -TERM "$pid" 2>/dev/null || true
		if wait_gone "$pid" 60; then
			say "Sites program stopped:"
			sed -n '/signal received/,$p' "$LOGS/sites.log" 2>/dev/null | format_log | indent || true
		else
			say "Sites program did not stop within 60s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || true
		fi
		stopped=1
	fi

	# Leftovers, for example after the sites program was killed: the child PIDs it recorded,
	# and any other process naming DEMO_DIR. Stopped in dependency order, like the sites
	# program does: managers and the other clients of the API servers, then API servers,
	# then etcd.
	local -A seen=()
	local candidates=() group entry
	if [ -f "$DEMO_DIR/processes" ]; then
		while read -r pid name; do
			[[ "$pid" =~ ^[0-9]+$ ]] && is_demo_process "$pid" && candidates+=("$pid $name")
		done <"$DEMO_DIR/processes"
	fi
	while read -r pid name; do
		[ -n "$pid" ] && candidates+=("$pid $name")
	done < <(demo_processes)
	for group in clients kube-apiserver etcd; do
		local pids=()
		for entry in ${candidates[@]+"${candidates[@]}"}; do
			read -r pid name <<<"$entry"
			case "$group:$name" in
				clients:etcd | clients:kube-apiserver) continue ;;
				clients:*) ;;
				"$group:$group") ;;
				*) continue ;;
			esac
			[ -z "${seen[$pid]:-}" ] || continue
			seen[$pid]=1
			kill -0 "$pid" 2>/dev/null || continue
			say "Stopping leftover $name (pid $pid)"
			pids+=("$pid")
		done
		((${#pids[@]} > 0)) || continue
		stopped=1
		# kube-apiserver's graceful shutdown waits for open watches; don't wait long for it.
		stop_pids "$([ "$group" = kube-apiserver ] && echo 5 || echo 15)" "${pids[@]}"
	done
	[ "$stopped" = 1 ] || say "No demo processes were running"
}

# remove_demo_dir deletes $DEMO_DIR, but only if it holds nothing but the demo's own files, so
# that a mistyped DEMO_DIR (say, /tmp) is never wiped.
remove_demo_dir() {
	local entry
	for entry in "$DEMO_DIR"/* "$DEMO_DIR"/.[!.]*; do
		[ -e "$entry" ] || continue
		case "${entry##*/}" in
			logs | tmp | control | kube-cache | ready | sites.pid | processes | processes.tmp | ports.env | ports.env.tmp | *.kubeconfig) ;;
			*)
				echo "not removing $DEMO_DIR: it holds ${entry##*/}, which the demo did not create" >&2
				return 1
				;;
		esac
	done
	rm -rf "$DEMO_DIR"
}

# request asks the sites program to do something and waits for its answer:
#   request <verb> <site> <content> <timeout seconds>
# It prints the answer (key=value lines) or, on failure, the reason, and fails.
request() {
	local verb=$1 site=$2 content=$3 timeout=$4 file deadline
	file="$CONTROL/$verb.$site"
	rm -f "$file.done" "$file.failed"
	printf '%s\n' "$content" >"$file.tmp"
	mv "$file.tmp" "$file"
	deadline=$((SECONDS + timeout))
	while [ ! -e "$file.done" ] && [ ! -e "$file.failed" ]; do
		if ((SECONDS >= deadline)); then
			echo "no answer from the sites program within ${timeout}s (its log: $LOGS/sites.log)" >&2
			return 1
		fi
		sites_alive || return 1
		sleep 0.1
	done
	if [ -e "$file.failed" ]; then
		cat "$file.failed" >&2
		return 1
	fi
	cat "$file.done"
}

# answer prints the value of key in an answer file: answer <file> <key>
answer() { sed -n "s/^$2=//p" "$1"; }

# print_status shows where the service runs and how to look around.
print_status() {
	local site key metrics health f
	for site in "${SITES[@]}"; do
		if is_dark "$site"; then
			say "$site is dark: its API server, controllers, kwok and Deich manager are stopped (etcd keeps its data)"
			continue
		fi
		say "At $site: kubectl -n $NS get sharedservices -o wide"
		kc "$site" -n "$NS" get sharedservices -o wide 2>&1 | indent || true
	done

	local down_cmd="make demo-down"
	[ "$DEMO_DIR" = "$REPO_ROOT/.demo" ] || down_cmd="make demo-down DEMO_DIR=$DEMO_DIR"
	echo
	echo "The demo is running. Talk to a site with kubectl ($KUBECTL_SHOWN, built by 'make demo'):"
	for site in "${SITES[@]}"; do
		echo
		if is_dark "$site"; then
			echo "  # $site (dark: kubectl gets 'connection refused' until 'make demo-down')"
		else
			echo "  # $site"
		fi
		echo "  export KUBECONFIG=$DEMO_DIR/$site.kubeconfig"
	done
	echo
	echo "  $KUBECTL_SHOWN -n $NS get sharedservices -o wide"
	echo "  $KUBECTL_SHOWN -n $NS get deployments,pods -o wide"
	echo "  $KUBECTL_SHOWN -n $NS describe sharedservice $SERVICE"
	echo "  $KUBECTL_SHOWN get replicationpeers,recoveryobjectives,nodes"
	echo
	if [ -s "$DEMO_DIR/ports.env" ]; then
		echo "Deich managers (metrics, health probes):"
		for site in "${SITES[@]}"; do
			is_dark "$site" && continue
			key="$(echo "$site" | tr '[:lower:]-' '[:upper:]_')"
			metrics="$(sed -n "s/^${key}_METRICS=//p" "$DEMO_DIR/ports.env" 2>/dev/null || true)"
			health="$(sed -n "s/^${key}_HEALTH=//p" "$DEMO_DIR/ports.env" 2>/dev/null || true)"
			[ -n "$metrics" ] && echo "  $site: http://$metrics/metrics  http://$health/readyz"
		done
		echo
	fi
	echo "Logs of every process: $LOGS/"
	for f in "$LOGS"/*.log; do
		[ -e "$f" ] && echo "  ${f##*/}"
	done
	echo "'$down_cmd' (or hack/demo.sh down) stops everything and removes $DEMO_DIR."
}

# format_log shortens the sites program's log lines for the terminal:
#   time=15:04:05.000 level=INFO msg="site started" site=sh-kiel  ->  site started: site=sh-kiel
format_log() {
	sed -E 's/^time=[^ ]+ level=INFO //; s/^time=[^ ]+ level=//; s/msg="([^"]*)"/\1:/; s/msg=([^ ]*)/\1:/; s/:$//'
}

# show_progress prints the sites program's log lines that are new since the last call.
SITES_LOG_SEEN=0
show_progress() {
	local total
	total="$({ wc -l <"$LOGS/sites.log"; } 2>/dev/null || echo 0)"
	if ((total > SITES_LOG_SEEN)); then
		sed -n "$((SITES_LOG_SEEN + 1)),${total}p" "$LOGS/sites.log" | format_log |
			while IFS= read -r line; do say "  sites: $line"; done
		SITES_LOG_SEEN=$total
		return 0
	fi
	return 1
}

# diagnose prints what helps to understand a failed step.
diagnose() {
	local site f
	for site in "${SITES[@]}"; do
		is_dark "$site" && continue
		echo "--- at $site: kubectl get replicationpeers,sharedservices -A -o wide"
		kc "$site" get replicationpeers -o wide 2>&1 | indent || true
		kc "$site" get sharedservices -A -o wide 2>&1 | indent || true
		echo "--- at $site: kubectl -n $NS describe sharedservice $SERVICE"
		kc "$site" -n "$NS" describe sharedservice "$SERVICE" 2>&1 | indent || true
	done
	for f in "$LOGS"/manager-*.log; do
		[ -f "$f" ] || continue
		echo "--- last lines of $f"
		tail -n 20 "$f" | indent
	done
}

# show_failure_logs prints the end of the logs that most likely explain a failed start.
show_failure_logs() {
	local f
	for f in "$LOGS"/control-plane.log "$LOGS"/kube-controller-manager-*.log "$LOGS"/kube-scheduler-*.log "$LOGS"/kwok-*.log "$LOGS"/manager-*.log; do
		[ -s "$f" ] || continue
		echo "--- last lines of $f"
		tail -n 10 "$f" | indent
	done
}

# wait_ready waits for the sites program to write $READY, relaying its log as progress.
wait_ready() {
	local pid=$1 deadline=$((SECONDS + DEMO_TIMEOUT)) quiet_since=$SECONDS
	while [ ! -e "$READY" ]; do
		if show_progress; then quiet_since=$SECONDS; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			show_progress || true
			say "The sites program exited before it was ready (its log: $LOGS/sites.log)"
			show_failure_logs
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			say "Sites not ready after ${DEMO_TIMEOUT}s (DEMO_TIMEOUT; log: $LOGS/sites.log)"
			show_failure_logs
			exit 1
		fi
		if ((SECONDS - quiet_since >= 15)); then
			say "  still starting ($((SECONDS - deadline + DEMO_TIMEOUT))s) ..."
			quiet_since=$SECONDS
		fi
		sleep 0.5
	done
	show_progress || true
}

# STARTED is 1 once this run has started the sites program, whose PID is MY_SITES_PID;
# UP_DONE is 1 once `up` succeeded.
STARTED=0
MY_SITES_PID=""
UP_DONE=0

# sites_alive fails, saying so, when the sites program this run started has stopped (say, a
# `make demo-down` from another terminal).
sites_alive() {
	kill -0 "$MY_SITES_PID" 2>/dev/null && return 0
	say "The sites program (pid $MY_SITES_PID) has stopped; see $LOGS/sites.log"
	return 1
}

# on_exit runs when `up` ends. Unless it succeeded (or found a demo already running), it stops
# everything this run started — also on Ctrl-C — and keeps the logs for a look.
on_exit() {
	local rc=$?
	if [ "$STARTED" = 1 ] && [ "$UP_DONE" != 1 ] && [ "$(cat "$PIDFILE" 2>/dev/null)" != "$MY_SITES_PID" ]; then
		# Someone ran `down` meanwhile, and maybe started another demo: not ours to stop.
		say "The demo this run started was stopped from elsewhere"
		((rc != 0)) || rc=1
	elif [ "$STARTED" = 1 ] && [ "$UP_DONE" != 1 ]; then
		trap '' INT TERM # let the cleanup finish; it is bounded by stop_all's timeouts
		echo
		if ((rc == 130 || rc == 143)); then
			say "Interrupted; stopping everything this run started"
		else
			say "The demo failed; stopping everything this run started"
		fi
		stop_all
		# Keep only the logs: nothing else is valid without the sites program.
		find "$DEMO_DIR" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
		say "Logs kept in $LOGS/; 'hack/demo.sh down' removes them"
		((rc != 0)) || rc=1
	fi
	exit "$rc"
}

up() {
	local begin=$SECONDS pid f

	# Every step, including the status of a running demo, is done with kubectl.
	[ -x "$KUBECTL" ] || {
		echo "missing $KUBECTL: run 'make demo-tools' (or 'make demo')" >&2
		exit 1
	}
	if pid="$(sites_pid)"; then
		say "A demo is already running in $DEMO_DIR (sites program pid $pid)"
		[ -e "$READY" ] || wait_ready "$pid"
		# Problems the sites program noticed since (a manager that exited, say).
		if grep -q 'level=ERROR' "$LOGS/sites.log" 2>/dev/null; then
			say "The sites program reported problems (from $LOGS/sites.log):"
			grep 'level=ERROR' "$LOGS/sites.log" | indent
		fi
		print_status
		return
	fi

	for f in etcd kube-apiserver kube-controller-manager kube-scheduler; do
		[ -x "$LOCALBIN/$f" ] || {
			echo "missing $LOCALBIN/$f: run 'make demo-tools' (or 'make demo')" >&2
			exit 1
		}
	done
	[ -x "$KWOK" ] || {
		echo "missing $KWOK: run 'make demo-tools' (or 'make demo')" >&2
		exit 1
	}
	[ -x "$MANAGER" ] || {
		echo "missing $MANAGER: run 'make build' (or 'make demo')" >&2
		exit 1
	}

	# A directory without a running sites program is left over from a crash or a failed
	# start: clear it (and anything still running from it) first.
	if [ -e "$DEMO_DIR" ]; then
		say "Cleaning up a stale demo in $DEMO_DIR"
		stop_all
		remove_demo_dir
	fi
	mkdir -p "$LOGS"

	say "Building the sites program into $SITES_BIN"
	(cd "$REPO_ROOT" && "$GO" build -o "$SITES_BIN" ./hack/demo)

	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	say "Starting sites sh-kiel and mv-schwerin: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (one fake node) each"
	# setsid + nohup: the sites keep running after this script and its terminal are gone, and
	# a Ctrl-C in the terminal does not reach them (the trap above stops them instead).
	# XDG_CACHE_HOME: envtest notes the ports it hands out in the user's cache directory; the
	# demo's go into $DEMO_DIR with everything else.
	XDG_CACHE_HOME="$DEMO_DIR/tmp/cache" setsid nohup "$SITES_BIN" \
		--dir="$DEMO_DIR" \
		--bin="$LOCALBIN" \
		--kwok="$KWOK" \
		--manager="$MANAGER" \
		--kwok-stages="$REPO_ROOT/hack/demo/kwok-stages.yaml" \
		>"$LOGS/sites.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$PIDFILE"
	MY_SITES_PID=$pid
	STARTED=1
	wait_ready "$pid"
	say "Sites started in $((SECONDS - begin))s"
	for f in "${SITES[@]}"; do
		say "At $f: kubectl get nodes"
		kc "$f" get nodes | indent
	done

	install_deich
	connect_sites
	deploy_service
	share_service
	fail_over
	UP_DONE=1
	echo
	print_status
	[ "$WITHIN_RTO" = 1 ] || exit 1
}

# install_deich installs Deich at every site as a user would — CRDs, namespace, ServiceAccount
# and RBAC from config/ — and runs the manager (bin/manager) with a token of its ServiceAccount.
install_deich() {
	local site server ca token kubeconfig started
	for site in "${SITES[@]}"; do
		say "At $site: install Deich from config/ (kubectl apply --server-side -k hack/demo/deich)"
		kc "$site" apply --server-side -k "$REPO_ROOT/hack/demo/deich" | indent
		# shellcheck disable=SC2046 # one argument per CRD
		kc "$site" wait --for=condition=Established --timeout=60s \
			$(kc "$site" get crd -o name | grep 'resilience\.deich\.io') >/dev/null

		kubeconfig="$DEMO_DIR/$site-manager.kubeconfig"
		say "At $site: a token for the ServiceAccount deich-system/deich-manager, in the manager's kubeconfig $kubeconfig"
		server="$(kc "$site" config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
		ca="$(kc "$site" config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
		token="$(kc "$site" -n deich-system create token deich-manager --duration=24h)"
		(
			umask 077
			cat >"$kubeconfig" <<-EOF
				apiVersion: v1
				kind: Config
				clusters:
				- name: $site
				  cluster:
				    server: $server
				    certificate-authority-data: $ca
				users:
				- name: deich-manager
				  user:
				    token: $token
				contexts:
				- name: $site
				  context:
				    cluster: $site
				    user: deich-manager
				current-context: $site
			EOF
		)
		say "At $site: start the Deich manager: $(basename "$MANAGER") --site=$site --kubeconfig=$kubeconfig --namespace=deich-system"
		if ! started="$(request start-manager "$site" "$kubeconfig" 90)"; then
			say "The manager of $site did not start"
			show_progress || true
			tail -n 20 "$LOGS/manager-$site.log" 2>/dev/null | indent || true
			exit 1
		fi
		show_progress || true
		say "Manager of $site ready (pid $(echo "$started" | sed -n 's/^pid=//p'); log: $LOGS/manager-$site.log)"
	done
}

# connect_sites creates the peer Secrets and ReplicationPeers and applies the shared objective.
connect_sites() {
	local site peer
	say "Connecting the sites, as you would with kubectl:"
	for site in "${SITES[@]}"; do
		peer="$(other_site "$site")"
		say "At $site: Secret deich-system/peer-$peer with $peer's kubeconfig"
		kc "$site" -n deich-system create secret generic "peer-$peer" \
			--from-file=kubeconfig="$DEMO_DIR/$peer.kubeconfig" \
			--dry-run=client -o yaml | kc "$site" apply -f - | indent
		say "At $site: ReplicationPeer $peer"
		# The sample describes sh-kiel's peer mv-schwerin; mv-schwerin's peer sh-kiel is its
		# mirror image.
		if [ "$site" = sh-kiel ]; then
			kc "$site" apply -f "$SAMPLES/resilience_v1alpha1_replicationpeer.yaml" | indent
		else
			sed -e '/^[[:space:]]*#/d' -e 's/mv-schwerin/sh-kiel/g' \
				"$SAMPLES/resilience_v1alpha1_replicationpeer.yaml" |
				kc "$site" apply -f - | indent
		fi
		# The sample probes every 5s; the demo probes every 2s so that the story is short.
		say "At $site: RecoveryObjective buergerdienste (the sample: RPO 30s, RTO 2m, Cold standby, automatic failover after 3 failed probes, lease 15s; probes every 2s here)"
		kc "$site" patch --local -f "$SAMPLES/resilience_v1alpha1_recoveryobjective.yaml" \
			--type=merge -p '{"spec":{"failover":{"probeInterval":"2s"}}}' -o yaml |
			kc "$site" apply -f - | indent
	done

	for site in "${SITES[@]}"; do
		peer="$(other_site "$site")"
		say "At $site: waiting for ReplicationPeer $peer to be Ready"
		if ! kc "$site" wait --for=condition=Ready "replicationpeer/$peer" --timeout=60s | indent; then
			say "ReplicationPeer $peer at $site did not become Ready within 60s"
			diagnose
			exit 1
		fi
		kc "$site" wait --for=condition=Valid recoveryobjective/buergerdienste --timeout=30s >/dev/null ||
			say "RecoveryObjective buergerdienste at $site is not Valid yet"
	done
	for site in "${SITES[@]}"; do
		say "At $site: kubectl get replicationpeers,recoveryobjectives"
		kc "$site" get replicationpeers,recoveryobjectives | indent
	done
}

# deploy_service prepares the namespace at both sites and deploys buergerkonto at sh-kiel.
deploy_service() {
	local site
	for site in "${SITES[@]}"; do
		say "At $site: namespace $NS, with RoleBindings that let Deich mirror its Secrets"
		kc "$site" apply -f "$REPO_ROOT/hack/demo/namespace.yaml" | indent
	done
	say "At $PRIMARY: the citizen service account $SERVICE (Deployment, Service, ConfigMap, Secret, Ingress)"
	kc "$PRIMARY" apply -f "$REPO_ROOT/hack/demo/buergerkonto.yaml" | indent
	if ! kc "$PRIMARY" -n "$NS" rollout status "deployment/$SERVICE" --timeout=90s | indent; then
		say "Deployment $SERVICE did not become ready at $PRIMARY"
		kc "$PRIMARY" -n "$NS" get deployments,replicasets,pods -o wide 2>&1 | indent || true
		kc "$PRIMARY" -n "$NS" get events 2>&1 | tail -n 20 | indent || true
		exit 1
	fi
	say "At $PRIMARY: kubectl -n $NS get pods -o wide (kwok's node: scheduled and Ready, no container runs)"
	kc "$PRIMARY" -n "$NS" get pods -o wide | indent
}

# share_service declares buergerkonto a SharedService and shows the mirrored copies and an
# edit travelling to them.
share_service() {
	local start elapsed value site
	say "At $PRIMARY: SharedService $SERVICE (the sample: primary sh-kiel, standby mv-schwerin, objective buergerdienste)"
	# The sample's public-endpoint check probes https://buergerkonto.example.de, which does not
	# resolve on this machine; the demo judges each site by its Deployment's ready replicas.
	say "  (without the sample's public-endpoint check: buergerkonto.example.de does not resolve here; the workload checks judge each site)"
	kc "$PRIMARY" patch --local -f "$SAMPLES/resilience_v1alpha1_sharedservice.yaml" --type=json -o yaml -p \
		'[{"op":"test","path":"/spec/healthChecks/0/name","value":"public-endpoint"},{"op":"remove","path":"/spec/healthChecks/0"}]' |
		kc "$PRIMARY" apply -f - | indent
	if ! kc "$PRIMARY" -n "$NS" wait --for=condition=Synced "sharedservice/$SERVICE" --timeout=60s | indent; then
		say "SharedService $SERVICE did not sync within 60s"
		diagnose
		exit 1
	fi
	if ! kc "$STANDBY" -n "$NS" wait --for=jsonpath='{.status.role}'=Standby "sharedservice/$SERVICE" --timeout=60s >/dev/null; then
		say "mv-schwerin does not report itself standby for $SERVICE within 60s"
		diagnose
		exit 1
	fi
	say "At $STANDBY: the mirrored copies (a Cold standby runs 0 replicas)"
	kc "$STANDBY" -n "$NS" get deployments,services,configmaps,secrets,ingresses \
		-l resilience.deich.io/shared-service="$SERVICE" | indent
	say "At $STANDBY: the copy's own hostname and read-only flag, from the SharedService's overrides"
	kc "$STANDBY" -n "$NS" get ingress "$SERVICE" -o jsonpath='{.spec.rules[0].host}{"\n"}' | indent
	kc "$STANDBY" -n "$NS" get configmap buergerkonto-config -o jsonpath='READ_ONLY={.data.READ_ONLY}{"\n"}' | indent

	say "At $PRIMARY: an edit (GREETING=Moin moin) ..."
	start=$(date +%s%N)
	kc "$PRIMARY" -n "$NS" patch configmap buergerkonto-config --type=merge -p '{"data":{"GREETING":"Moin moin"}}' | indent
	value=""
	for _ in $(seq 1 200); do
		value="$(kc "$STANDBY" -n "$NS" get configmap buergerkonto-config -o jsonpath='{.data.GREETING}')"
		[ "$value" = "Moin moin" ] && break
		sleep 0.05
	done
	elapsed=$((($(date +%s%N) - start) / 1000000))
	if [ "$value" = "Moin moin" ]; then
		say "... reached the copy at $STANDBY within ${elapsed}ms (including kubectl's own start-up)"
	else
		say "... did not reach $STANDBY within ${elapsed}ms"
	fi
	for site in "${SITES[@]}"; do
		say "At $site: kubectl -n $NS get sharedservices -o wide"
		kc "$site" -n "$NS" get sharedservices -o wide | indent
	done
}

# The failover's measurements, for the summary.
WITHIN_RTO=0

# fail_over takes sh-kiel dark and follows mv-schwerin detecting it, promoting its copies and
# its pods becoming Ready; then prints the summary.
fail_over() {
	local threshold interval lease rto rpo rto_s rpo_s check answer_file t_dark stopped_at
	local sync_time age phase="" active="" holder="" failures="" fmsg completed="" detected="" rtime=""
	local last_phase="" last_holder="" last_failures="" last_ready="" t_detect="" t_promoted="" t_ready=""
	local deadline line want ready dep value

	threshold="$(kc "$STANDBY" get recoveryobjective buergerdienste -o jsonpath='{.spec.failover.failureThreshold}')"
	interval="$(kc "$STANDBY" get recoveryobjective buergerdienste -o jsonpath='{.spec.failover.probeInterval}')"
	lease="$(kc "$STANDBY" get recoveryobjective buergerdienste -o jsonpath='{.spec.failover.leaseDuration}')"
	rto="$(kc "$STANDBY" get recoveryobjective buergerdienste -o jsonpath='{.spec.rto}')"
	rpo="$(kc "$STANDBY" get recoveryobjective buergerdienste -o jsonpath='{.spec.rpo}')"
	threshold="${threshold:-3}"
	rto_s="$(dur_s "$rto")"
	rpo_s="$(dur_s "$rpo")"
	# The check that judges sh-kiel while it is active, as mv-schwerin runs it through its peer
	# connection.
	check="$(kc "$PRIMARY" -n "$NS" get sharedservice "$SERVICE" \
		-o jsonpath="{.spec.healthChecks[?(@.site==\"$PRIMARY\")].name}" | awk '{print $1}')"
	want="$(kc "$PRIMARY" -n "$NS" get deployment "$SERVICE" -o jsonpath='{.spec.replicas}')"

	echo
	say "Now the $PRIMARY data centre goes dark: its Deich manager, kwok, scheduler and controller manager are killed, its API server stopped."
	say "  $STANDBY probes $PRIMARY's $check check every $interval and may promote after $threshold failures in a row, once $PRIMARY's lease ($lease) has expired."
	answer_file="$CONTROL/dark.$PRIMARY.done"
	if ! request dark "$PRIMARY" "" 60 >/dev/null; then
		say "Could not take $PRIMARY dark"
		exit 1
	fi
	show_progress || true
	t_dark="$(ts_s "$(answer "$answer_file" dark)")"
	stopped_at="$(ts_s "$(answer "$answer_file" stopped)")"
	say "$PRIMARY is dark (everything stopped within $(secs "$(calc "$stopped_at - $t_dark")")). At $PRIMARY: kubectl get sharedservices"
	kc "$PRIMARY" -n "$NS" get sharedservices --request-timeout=2s 2>&1 | head -n 1 | indent || true

	# How old the standby's copy was when sh-kiel went dark: the last time mv-schwerin had it
	# confirmed complete and current. Nothing newer can arrive from a dark site.
	sync_time="$(kc "$STANDBY" -n "$NS" get sharedservice "$SERVICE" -o jsonpath='{.status.lastSyncTime}')"
	age=""
	[ -n "$sync_time" ] && age="$(calc "$t_dark - $(ts_s "$sync_time")")"
	# lastSyncTime has whole seconds; a copy confirmed in the second sh-kiel went dark is fresh.
	[ -n "$age" ] && ! le 0 "$age" && age=0

	deadline="$(calc "$t_dark + $rto_s + 30")"
	while le "$(now_s)" "$deadline"; do
		sites_alive || exit 1
		line="$(kc "$STANDBY" -n "$NS" get sharedservice "$SERVICE" --request-timeout=5s -o jsonpath="{.status.phase}|{.status.activeSite}|{.status.lease.holder}|{.status.healthChecks[?(@.name==\"$check\")].consecutiveFailures}|{.status.lastFailover.detectedAt}|{.status.lastFailover.completedAt}|{.status.lastFailover.recoveryTime}|{.status.healthChecks[?(@.name==\"$check\")].message}" 2>/dev/null)" || {
			sleep "$POLL"
			continue
		}
		IFS='|' read -r phase active holder failures detected completed rtime fmsg <<<"$line"
		failures="${failures:-0}"
		if [ "$failures" != "$last_failures" ] && [ "$failures" != 0 ] && [ -z "$t_promoted" ]; then
			if [ -z "$last_failures" ] || [ "$last_failures" = 0 ]; then
				say "At $STANDBY: $check failed${fmsg:+: $fmsg}"
			else
				say "At $STANDBY: $check failed $failures times in a row"
			fi
			if [ -z "$t_detect" ] && ((failures >= threshold)); then
				t_detect="$(now_s)"
				say "At $STANDBY: failure detected ($failures of $threshold), $(secs "$(calc "$t_detect - $t_dark")") after $PRIMARY went dark; promotion waits until $PRIMARY's lease has stood unchanged for $lease plus the max clock skew"
			fi
		fi
		last_failures="$failures"
		if [ "$holder" != "$last_holder" ]; then
			[ -n "$last_holder" ] && say "At $STANDBY: the lease is now held by ${holder:-nobody}"
			last_holder="$holder"
		fi
		if [ "$phase" != "$last_phase" ]; then
			say "At $STANDBY: phase ${phase:-?}, active site ${active:-?}"
			last_phase="$phase"
		fi
		if [ -z "$t_promoted" ] && [ -n "$completed" ] && [ "$active" = "$STANDBY" ]; then
			t_promoted="$(now_s)"
			[ -n "$t_detect" ] || t_detect="$t_promoted"
			say "At $STANDBY: promoted — the copies are in active form (lastFailover: detectedAt $detected, completedAt $completed, recoveryTime $rtime)"
		fi
		if [ -n "$t_promoted" ]; then
			dep="$(kc "$STANDBY" -n "$NS" get deployment "$SERVICE" --request-timeout=5s -o jsonpath='{.spec.replicas} {.status.readyReplicas}' 2>/dev/null || true)"
			read -r want ready <<<"$dep"
			ready="${ready:-0}"
			if [ "$ready" != "$last_ready" ]; then
				say "At $STANDBY: deployment/$SERVICE $ready/$want pods Ready"
				last_ready="$ready"
			fi
			if [ -n "$want" ] && ((want > 0 && ready == want)); then
				t_ready="$(now_s)"
				break
			fi
		fi
		sleep "$POLL"
	done

	if [ -z "$t_ready" ]; then
		say "$STANDBY did not serve $SERVICE within the RTO ($rto) plus 30s. What $STANDBY reports:"
		diagnose
		exit 1
	fi

	say "At $STANDBY: kubectl -n $NS get sharedservices -o wide"
	kc "$STANDBY" -n "$NS" get sharedservices -o wide | indent
	say "At $STANDBY: kubectl -n $NS get deployments,pods -o wide"
	kc "$STANDBY" -n "$NS" get deployments,pods -o wide | indent
	value="$(kc "$STANDBY" -n "$NS" get configmap buergerkonto-config -o jsonpath='{.data.READ_ONLY}')"
	say "At $STANDBY: the copies are in their active form: READ_ONLY=${value:-<unset>} (the standby override is gone)"
	say "At $STANDBY: the SharedService's events"
	kc "$STANDBY" -n "$NS" get events --field-selector involvedObject.kind=SharedService \
		--sort-by=.lastTimestamp -o custom-columns='TYPE:.type,REASON:.reason,MESSAGE:.message' 2>&1 | indent || true

	summary "$t_dark" "$t_detect" "$t_promoted" "$t_ready" "$rto" "$rto_s" "$rpo" "$rpo_s" "$age" "$rtime" "$threshold" "$check" "$sync_time"
}

# row prints one row of the summary table.
row() { printf '  %-48s %10s   %s\n' "$1" "$2" "$3"; }

# summary prints the failover's timings against the objective.
summary() {
	local t_dark=$1 t_detect=$2 t_promoted=$3 t_ready=$4 rto=$5 rto_s=$6 rpo=$7 rpo_s=$8 age=$9
	local rtime=${10} threshold=${11} check=${12} sync_time=${13}
	local recovery verdict_rto verdict_rpo
	recovery="$(calc "$t_ready - $t_dark")"
	if le "$recovery" "$rto_s"; then
		WITHIN_RTO=1
		verdict_rto="within the RTO of $rto"
	else
		verdict_rto="NOT within the RTO of $rto"
	fi
	if [ -z "$age" ]; then
		verdict_rpo="unknown: $STANDBY reported no lastSyncTime"
	elif le "$age" "$rpo_s"; then
		verdict_rpo="within the RPO of $rpo"
	else
		verdict_rpo="NOT within the RPO of $rpo"
	fi

	echo
	echo "Failover summary ($PRIMARY went dark at $(date -d "@$t_dark" +%H:%M:%S.%2N); times measured from then, sampled every ${POLL}s):"
	echo
	row "step" "after" "how it is measured"
	row "$STANDBY detects the failure" "$(secs "$(calc "$t_detect - $t_dark")")" "$check failed $threshold times in a row"
	row "$STANDBY promotes its copies" "$(secs "$(calc "$t_promoted - $t_dark")")" "status.lastFailover.completedAt set"
	row "$STANDBY's pods Ready" "$(secs "$recovery")" "deployment/$SERVICE readyReplicas = replicas"
	echo
	row "recovery time (dark -> pods Ready)" "$(secs "$recovery")" "$verdict_rto"
	[ -n "$rtime" ] && row "  Deich's own record (lastFailover.recoveryTime)" "$(secs "$(dur_s "$rtime")")" "from the first failed probe to promotion"
	if [ -n "$age" ]; then
		row "data age of the copy when $PRIMARY went dark" "$(secs "$age")" "$verdict_rpo (lastSyncTime $sync_time)"
	else
		row "data age of the copy when $PRIMARY went dark" "?" "$verdict_rpo"
	fi
	echo
	if [ "$WITHIN_RTO" = 1 ]; then
		say "Result: $STANDBY served $SERVICE $(secs "$recovery") after $PRIMARY went dark, within the RTO of $rto."
	else
		say "Result: $STANDBY served $SERVICE $(secs "$recovery") after $PRIMARY went dark, NOT within the RTO of $rto."
	fi
}

down() {
	say "Stopping the demo in $DEMO_DIR"
	stop_all
	if [ -e "$DEMO_DIR" ]; then
		remove_demo_dir
		say "Removed $DEMO_DIR"
	else
		say "Nothing to remove: $DEMO_DIR does not exist"
	fi
}

case "${1:-}" in
	up) up ;;
	down) down ;;
	*)
		echo "usage: $0 up|down   (DEMO_DIR=$DEMO_DIR)" >&2
		exit 2
		;;
esac
