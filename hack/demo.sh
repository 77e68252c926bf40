#!/usr/bin/env bash
# hack/demo.sh — the local three-state Deich demo behind `make demo` and `make demo-down`.
#
#   hack/demo.sh up     start sh-kiel, mv-schwerin and the witness hh-hamburg, install Deich,
#                       share the citizen service account buergerkonto from sh-kiel, take
#                       mv-schwerin dark (sh-kiel serves on), bring it back, take sh-kiel dark
#                       (mv-schwerin takes over within the RTO: database, application, DNS),
#                       bring it back and move the service home with a Switchover; leaves the
#                       sites running
#   hack/demo.sh down   stop everything `up` started and remove $DEMO_DIR
#
# The story is told by one Go program, hack/demo (see its package documentation); this script
# only builds it and passes the environment on.
#
# Environment:
#   DEMO_DIR        where kubeconfigs, logs and control-plane data live (default: <repo>/.demo)
#   LOCALBIN        where the control-plane binaries are (default: <repo>/bin)
#   KWOK            the kwok binary (default: the newest $LOCALBIN/kwok-v*, built by `make demo`)
#   MANAGER         the Deich manager binary (default: $LOCALBIN/manager, built by `make build`)
#   KUBECTL         the kubectl binary (default: $LOCALBIN/kubectl, built by `make demo-tools`
#                   at the Kubernetes version of the sites; a kubectl on PATH is never used)
#   KUSTOMIZE       the kustomize binary (default: the version the Makefile pins, in $LOCALBIN)
#   DEMO_BIN        where the demo program is built (default: $LOCALBIN/deich-demo)
#   DEMO_TIMEOUT    how long the sites may take to come up (default: 3m)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCALBIN="$(realpath -m "${LOCALBIN:-$REPO_ROOT/bin}")"
DEMO_BIN="$(realpath -m "${DEMO_BIN:-$LOCALBIN/deich-demo}")"
if [ -z "${KWOK:-}" ]; then
	KWOK="$(find "$LOCALBIN" -maxdepth 1 -name 'kwok-v*' 2>/dev/null | sort -V | tail -n 1)"
fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

case "${1:-}" in
	up | down) ;;
	*)
		echo "usage: $0 up|down" >&2
		exit 2
		;;
esac

cd "$REPO_ROOT"
"${GO:-go}" build -o "$DEMO_BIN" ./hack/demo
exec "$DEMO_BIN" "$1" \
	--dir="${DEMO_DIR:-$REPO_ROOT/.demo}" \
	--bin="$LOCALBIN" \
	--manager="${MANAGER:-$LOCALBIN/manager}" \
	--kubectl="${KUBECTL:-$LOCALBIN/kubectl}" \
	${KWOK:+--kwok="$KWOK"} \
	${KUSTOMIZE:+--kustomize="$KUSTOMIZE"} \
	--timeout="${DEMO_TIMEOUT:-3m}"
