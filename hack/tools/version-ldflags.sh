#!/usr/bin/env bash
# Prints the -X linker flags that stamp Kubernetes binaries built from this module with the
# version of k8s.io/kubernetes pinned in go.mod, as Kubernetes' own release build does, so that
# /version reports e.g. v1.37.2 instead of v0.0.0-master.
set -euo pipefail
cd "$(dirname "$0")"
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
major=${version#v}; major=${major%%.*}
minor=${version#v"$major".}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
echo "-X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
