#!/usr/bin/env bash
# hack/demo.sh — the local two-site Deich demo behind `make demo` and `make demo-down`.
#
#   hack/demo.sh up     start two sites (sh-kiel, mv-schwerin), each with its own Deich
#                       manager, connect them as peers, share the citizen service account
#                       buergerkonto from sh-kiel and show its copies at mv-schwerin
#   hack/demo.sh down   stop everything `up` started and remove $DEMO_DIR
#
# How it works: `up` builds hack/demo (the "sites" program) and starts it in the background.
# That program runs one local control plane (etcd + kube-apiserver) per site with Deich's CRDs
# installed, writes an admin kubeconfig per site and runs one manager (bin/manager) per site.
# Everything after that is done here with plain kubectl, exactly as you would connect two real
# clusters: a peer Secret holding the other site's kubeconfig, a ReplicationPeer naming the
# other site, and the shared RecoveryObjective, at each site.
#
# Environment:
#   DEMO_DIR        where kubeconfigs, logs and control-plane data live (default: <repo>/.demo)
#   LOCALBIN        where etcd and kube-apiserver are (default: <repo>/bin)
#   MANAGER         the Deich manager binary (default: $LOCALBIN/manager, built by `make build`)
#   DEMO_SITES_BIN  where the sites program is built (default: $LOCALBIN/deich-demo-sites)
#   DEMO_TIMEOUT    seconds to wait for the sites to come up (default: 120)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCALBIN="$(realpath -m "${LOCALBIN:-$REPO_ROOT/bin}")"
MANAGER="$(realpath -m "${MANAGER:-$LOCALBIN/manager}")"
SITES_BIN="$(realpath -m "${DEMO_SITES_BIN:-$LOCALBIN/deich-demo-sites}")"
DEMO_TIMEOUT="${DEMO_TIMEOUT:-120}"
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
LOGS="$DEMO_DIR/logs"
PIDFILE="$DEMO_DIR/sites.pid"
READY="$DEMO_DIR/ready"

# say prints one step of the story with a timestamp.
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# indent prefixes command output so it stands apart from the steps.
indent() { sed 's/^/    /'; }

# other_site prints the peer of a site.
other_site() { if [ "$1" = sh-kiel ]; then echo mv-schwerin; else echo sh-kiel; fi; }

# kc runs kubectl against one site: kc <site> <kubectl args...>
kc() {
	local site=$1
	shift
	kubectl --kubeconfig="$DEMO_DIR/$site.kubeconfig" "$@"
}

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

# demo_processes lists "<pid> <name>" of every etcd, kube-apiserver, manager and sites program
# whose command line names $DEMO_DIR — the demo's processes, even if the sites program that
# started them was killed. The directory is passed through the environment so that awk's own
# command line does not match.
demo_processes() {
	ps -eo pid=,args= |
		DIR="$DEMO_DIR" MGR="$(basename "$MANAGER")" awk '
			{
				n = split($2, parts, "/"); name = parts[n]
				line = $0 " "
				if (name != "etcd" && name != "kube-apiserver" && name != "deich-demo-sites" && name != ENVIRON["MGR"] && name != "manager") next
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

# stop_all stops the sites program (which stops its managers and control planes), then any
# process of this demo that is still left, for example after the sites program was killed.
stop_all() {
	local pid name stopped=0
	if pid="$(sites_pid)"; then
		say "Stopping the sites program (pid $pid): managers first, then both control planes"
		kill -TERM "$pid" 2>/dev/null || true
		if wait_gone "$pid" 30; then
			say "Sites program stopped:"
			sed -n '/signal received/,$p' "$LOGS/sites.log" 2>/dev/null | format_log | indent || true
		else
			say "Sites program did not stop within 30s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || true
		fi
		stopped=1
	fi

	# Leftovers, for example after the sites program was killed: the child PIDs it recorded,
	# and any other process naming DEMO_DIR. Stopped in dependency order, like the sites
	# program does: managers, then API servers, then etcd.
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
	for group in managers kube-apiserver etcd; do
		local pids=()
		for entry in ${candidates[@]+"${candidates[@]}"}; do
			read -r pid name <<<"$entry"
			case "$group:$name" in
				managers:etcd | managers:kube-apiserver) continue ;;
				managers:*) ;;
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
			logs | tmp | ready | sites.pid | processes | processes.tmp | ports.env | *.kubeconfig) ;;
			*)
				echo "not removing $DEMO_DIR: it holds ${entry##*/}, which the demo did not create" >&2
				return 1
				;;
		esac
	done
	rm -rf "$DEMO_DIR"
}

# print_status shows both sites' peers and objectives and how to use them.
print_status() {
	local site key metrics health
	for site in "${SITES[@]}"; do
		say "At $site: kubectl get replicationpeers -o wide"
		kc "$site" get replicationpeers -o wide | indent
		say "At $site: kubectl get recoveryobjectives"
		kc "$site" get recoveryobjectives | indent
	done

	local down_cmd="make demo-down"
	[ "$DEMO_DIR" = "$REPO_ROOT/.demo" ] || down_cmd="make demo-down DEMO_DIR=$DEMO_DIR"
	echo
	echo "The demo is running. Talk to a site with kubectl:"
	for site in "${SITES[@]}"; do
		echo
		echo "  # $site"
		echo "  export KUBECONFIG=$DEMO_DIR/$site.kubeconfig"
	done
	echo
	echo "  kubectl get replicationpeers,recoveryobjectives"
	echo "  kubectl -n buergerkonto get sharedservices,deployments,configmaps"
	echo
	echo "Managers (metrics, health probes):"
	for site in "${SITES[@]}"; do
		key="$(echo "$site" | tr '[:lower:]-' '[:upper:]_')"
		metrics="$(sed -n "s/^${key}_METRICS=//p" "$DEMO_DIR/ports.env" 2>/dev/null || true)"
		health="$(sed -n "s/^${key}_HEALTH=//p" "$DEMO_DIR/ports.env" 2>/dev/null || true)"
		echo "  $site: http://$metrics/metrics  http://$health/readyz"
	done
	echo
	echo "Logs: $LOGS/ (sites.log, control-plane.log, manager-<site>.log)"
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

# diagnose prints what helps to understand a failed start.
diagnose() {
	local site f
	for site in "${SITES[@]}"; do
		echo "--- kubectl describe replicationpeers at $site"
		kc "$site" describe replicationpeers 2>&1 | indent || true
	done
	for f in "$LOGS"/manager-*.log; do
		[ -f "$f" ] || continue
		echo "--- last lines of $f"
		tail -n 20 "$f" | indent
	done
}

# show_failure_logs prints the end of the log that most likely explains a failed start: the
# control planes' if the sites never came up, else the managers'.
show_failure_logs() {
	local f
	if ! grep -q 'msg="sites started"' "$LOGS/sites.log" 2>/dev/null; then
		[ -s "$LOGS/control-plane.log" ] || return 0
		echo "--- last lines of $LOGS/control-plane.log"
		tail -n 15 "$LOGS/control-plane.log" | indent
		return 0
	fi
	for f in "$LOGS"/manager-*.log; do
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

# STARTED is 1 once this run has started the sites program; UP_DONE once `up` succeeded.
STARTED=0
UP_DONE=0

# on_exit runs when `up` ends. Unless it succeeded (or found a demo already running), it stops
# everything this run started — also on Ctrl-C — and keeps the logs for a look.
on_exit() {
	local rc=$?
	if [ "$STARTED" = 1 ] && [ "$UP_DONE" != 1 ]; then
		trap '' INT TERM # let the cleanup finish; it is bounded by stop_all's timeouts
		echo
		if ((rc == 130 || rc == 143)); then
			say "Interrupted; stopping everything this run started"
		else
			say "Start failed; stopping everything this run started"
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
	local begin=$SECONDS pid site peer f

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

	for f in "$LOCALBIN/etcd" "$LOCALBIN/kube-apiserver"; do
		[ -x "$f" ] || {
			echo "missing $f: run 'make control-plane' (or 'make demo')" >&2
			exit 1
		}
	done
	[ -x "$MANAGER" ] || {
		echo "missing $MANAGER: run 'make build' (or 'make demo')" >&2
		exit 1
	}
	command -v kubectl >/dev/null || {
		echo "kubectl is required" >&2
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
	say "Starting sites sh-kiel and mv-schwerin (etcd + kube-apiserver each) and a Deich manager per site"
	# setsid + nohup: the sites keep running after this script and its terminal are gone, and
	# a Ctrl-C in the terminal does not reach them (the trap above stops them instead).
	setsid nohup "$SITES_BIN" \
		--dir="$DEMO_DIR" \
		--bin="$LOCALBIN" \
		--manager="$MANAGER" \
		--crds="$REPO_ROOT/config/crd/bases" \
		>"$LOGS/sites.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$PIDFILE"
	STARTED=1
	wait_ready "$pid"
	say "Sites started in $((SECONDS - begin))s"

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
			kc "$site" apply -f "$REPO_ROOT/config/samples/resilience_v1alpha1_replicationpeer.yaml" | indent
		else
			sed -e '/^[[:space:]]*#/d' -e 's/mv-schwerin/sh-kiel/g' \
				"$REPO_ROOT/config/samples/resilience_v1alpha1_replicationpeer.yaml" |
				kc "$site" apply -f - | indent
		fi
		say "At $site: RecoveryObjective buergerdienste (the same DR standard at both sites)"
		kc "$site" apply -f "$REPO_ROOT/config/samples/resilience_v1alpha1_recoveryobjective.yaml" | indent
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
	say "Peers connected: each site reaches the other, in $((SECONDS - begin))s overall"

	share_service
	UP_DONE=1
	print_status
}

# share_service applies the citizen service account at sh-kiel, declares it shared with
# mv-schwerin, and shows the mirrored copies and an edit travelling to them.
share_service() {
	local start elapsed value
	say "At sh-kiel: the citizen service account buergerkonto (Deployment, Service, ConfigMap, Secret, Ingress)"
	kc sh-kiel apply -f "$REPO_ROOT/hack/demo/buergerkonto.yaml" | indent
	say "At sh-kiel: SharedService buergerkonto (primary sh-kiel, standby mv-schwerin, objective buergerdienste)"
	kc sh-kiel apply -f "$REPO_ROOT/config/samples/resilience_v1alpha1_sharedservice.yaml" | indent
	if ! kc sh-kiel -n buergerkonto wait --for=condition=Synced sharedservice/buergerkonto --timeout=60s | indent; then
		say "SharedService buergerkonto did not sync within 60s"
		kc sh-kiel -n buergerkonto describe sharedservice buergerkonto | indent
		exit 1
	fi
	say "At mv-schwerin: the mirrored copies (a Cold standby runs 0 replicas)"
	kc mv-schwerin -n buergerkonto get deployments,services,configmaps,secrets,ingresses \
		-l resilience.deich.io/shared-service=buergerkonto | indent
	say "At mv-schwerin: the copy's own hostname and read-only flag, from the SharedService's overrides"
	kc mv-schwerin -n buergerkonto get ingress buergerkonto -o jsonpath='{.spec.rules[0].host}{"\n"}' | indent
	kc mv-schwerin -n buergerkonto get configmap buergerkonto-config -o jsonpath='READ_ONLY={.data.READ_ONLY}{"\n"}' | indent

	say "At sh-kiel: an edit (GREETING=Moin moin) ..."
	start=$(date +%s%N)
	kc sh-kiel -n buergerkonto patch configmap buergerkonto-config --type=merge -p '{"data":{"GREETING":"Moin moin"}}' | indent
	value=""
	for _ in $(seq 1 200); do
		value="$(kc mv-schwerin -n buergerkonto get configmap buergerkonto-config -o jsonpath='{.data.GREETING}')"
		[ "$value" = "Moin moin" ] && break
		sleep 0.05
	done
	elapsed=$((($(date +%s%N) - start) / 1000000))
	if [ "$value" = "Moin moin" ]; then
		say "... reached the copy at mv-schwerin within ${elapsed}ms (including kubectl's own start-up)"
	else
		say "... did not reach mv-schwerin within ${elapsed}ms"
	fi
	for site in "${SITES[@]}"; do
		say "At $site: kubectl get sharedservices -n buergerkonto -o wide"
		kc "$site" -n buergerkonto get sharedservices -o wide | indent
	done
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
