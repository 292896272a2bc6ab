# shellcheck shell=bash
# scripts/e2e/lib.sh — helpers shared by the end-to-end boot scripts:
# messages, phase timing, the cache directory and image offsets.

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}
note() { printf '%s\n' "$*" >&2; }

# phase NAME: start a timed phase; phase_end prints its duration. Phases do
# not nest.
phase() {
	_phase_name=$1
	_phase_start=$(date +%s)
	printf -- '---- %s\n' "$_phase_name" >&2
}
phase_end() {
	local d=$(($(date +%s) - _phase_start))
	printf -- '---- %s: %dm%02ds\n' "$_phase_name" $((d / 60)) $((d % 60)) >&2
	E2E_TIMINGS+=("$(printf '%-44s %dm%02ds' "$_phase_name" $((d / 60)) $((d % 60)))")
}
E2E_TIMINGS=()
print_timings() {
	local t
	printf '\ntimings:\n' >&2
	for t in "${E2E_TIMINGS[@]}"; do printf '  %s\n' "$t" >&2; done
}

e2e_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
E2E_CACHE=${HOMELAB_E2E_CACHE:-$e2e_root/target/e2e-cache}

# hash_inputs FILE...: one short hex digest of the files' names and bytes.
hash_inputs() {
	local f name
	for f in "$@"; do
		name=$(realpath -s "$f")
		printf '%s\n' "${name#"$e2e_root"/}"
		cat "$f"
	done | sha256sum | cut -c1-16
}

# part_offset IMAGE N: byte offset of partition N (sfdisk --json). N is the
# number in the table, not the position in sfdisk's list: a cloud image's
# GPT lists p1, p14, p15, p16.
part_offset() {
	sfdisk --json "$1" | /usr/bin/python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
# sfdisk names partition N "<device>N", or "<device>pN" after a digit.
nums = {int(p["node"][len(t["device"]):].lstrip("p")): p for p in t["partitions"]}
n = int(sys.argv[1])
if n not in nums:
    sys.exit("%s has no partition %d (it has %s)" % (t["device"], n, sorted(nums)))
print(nums[n]["start"] * t.get("sectorsize", 512))' "$2"
}
