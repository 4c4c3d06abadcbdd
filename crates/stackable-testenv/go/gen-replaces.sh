#!/usr/bin/env bash
# Prints a `replace` block for go.mod: one line for every k8s.io staging module that
# k8s.io/kubernetes@VERSION requires as v0.0.0, pointing at the published v0.MINOR.PATCH tag.
#
# Usage: gen-replaces.sh v1.37.2 [path/to/kubernetes.mod]
# Without a path, the go.mod is fetched through the Go module proxy (`go mod download -json`).
set -euo pipefail

version="${1:?usage: gen-replaces.sh vMAJOR.MINOR.PATCH [kubernetes.mod]}"
modfile="${2:-}"
if [[ -z "$modfile" ]]; then
    modfile="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${version}" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
fi
[[ -f "$modfile" ]] || { echo "gen-replaces.sh: no go.mod for k8s.io/kubernetes@${version}" >&2; exit 1; }

# v1.37.2 -> v0.37.2
staging_version="v0.${version#v1.}"

echo "replace ("
# Lines like "	k8s.io/api v0.0.0" in the require blocks are the staging modules.
awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// { print $1 }' "$modfile" | sort -u | while read -r module; do
    printf '\t%s => %s %s\n' "$module" "$module" "$staging_version"
done
echo ")"
