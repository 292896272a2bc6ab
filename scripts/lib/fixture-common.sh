# shellcheck shell=bash
# Helpers shared by scripts/make-fixtures and scripts/make-fixture-gpt4k.
# Sourced, not executed. Callers set `set -euo pipefail` and define WORK (a
# scratch directory that they delete on exit).
#
# Everything here aims at byte-identical output from run to run: fixed time
# (FIXTURE_EPOCH), fixed UUIDs/serials passed in by the caller, sorted copy
# order, and a fixed mke2fs.conf so the host's defaults do not leak in.

# 2023-11-14 22:13:20 UTC. Used for every timestamp the tools let us choose.
FIXTURE_EPOCH=1700000000

# mkfs/sfdisk live in /usr/sbin, which is not in a normal user's PATH on Debian.
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C TZ=UTC
export SOURCE_DATE_EPOCH=$FIXTURE_EPOCH   # mtools (mmd/mcopy) and mkfs.fat
export E2FSPROGS_FAKE_TIME=$FIXTURE_EPOCH # mke2fs/debugfs/tune2fs: sb times, crtime
export MTOOLS_SKIP_CHECK=1                # FAT32 with 512-byte clusters is fine
export MTOOLSRC=/dev/null                 # ignore ~/.mtoolsrc and its drive maps
umask 022

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# run CMD...: run quietly; on failure show everything it printed, then die.
run() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" >&2
		die "command failed: $*"
	fi
}

need_tools() {
	local t missing=()
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (scripts/test installs them)"
}

# blob TAG SIZE: SIZE deterministic bytes on stdout. They start with the line
# "HOMELAB-FIXTURE TAG" (recognisable in a hex dump) and continue with an LCG
# stream seeded from TAG, so two blobs never share content and a copy that is
# shifted by any amount is detected. Every intermediate stays below 2^53, so
# mawk and gawk (doubles) agree bit for bit.
blob() {
	awk -v tag="$1" -v size="$2" 'BEGIN {
		for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i
		hdr = "HOMELAB-FIXTURE " tag "\n"
		n = length(hdr)
		if (n > size) { hdr = substr(hdr, 1, size); n = size }
		printf "%s", hdr
		s = 5381
		for (i = 1; i <= length(tag); i++) s = (s * 33 + ord[substr(tag, i, 1)]) % 4294967296
		for (; n < size; n++) {
			s = (s * 69069 + 1) % 4294967296
			printf "%c", int(s / 16777216)
		}
	}'
}

# put PATH: write stdin to PATH, creating parent directories.
put() {
	mkdir -p "$(dirname "$1")"
	cat >"$1"
}

# put_blob PATH TAG SIZE
put_blob() {
	mkdir -p "$(dirname "$1")"
	blob "$2" "$3" >"$1"
}

# new_file PATH SIZE: a fresh all-zero sparse file.
new_file() {
	rm -f "$1"
	truncate -s "$2" "$1"
}

# place DISK FSFILE OFFSET_BYTES: copy a filesystem file into a disk image,
# leaving holes where the source is zero.
place() {
	dd if="$2" of="$1" bs=1M seek="$3" oflag=seek_bytes conv=notrunc,sparse status=none
}

# region_is DISK OFFSET_BYTES FILE: true when DISK holds FILE's bytes at OFFSET.
region_is() {
	local size
	size=$(stat -c %s "$3")
	cmp -s "$3" <(dd if="$1" bs=64K skip="$2" count="$size" iflag=skip_bytes,count_bytes status=none)
}

# write_mke2fs_conf FILE: the mke2fs.conf Ubuntu 22.04/24.04 images are built
# with (ubuntu-image mkfs/confs/24.04, see targets.md §1.5). Using our own
# copy keeps the host's /etc/mke2fs.conf out of the fixtures.
write_mke2fs_conf() {
	cat >"$1" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext3 = {
		features = has_journal
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		blocksize = 1024
		inode_ratio = 4096
	}
	floppy = {
		blocksize = 1024
		inode_ratio = 8192
	}
EOF
}

# The two ext4 feature sets below are used by the scripts that source this file.
# The feature set of Ubuntu 22.04/24.04 (and Armbian built on a noble host).
# shellcheck disable=SC2034
EXT4_FEATURES_NOBLE="metadata_csum,64bit,flex_bg,huge_file,dir_nlink,extra_isize,^orphan_file,^metadata_csum_seed"
# 25.10/26.04 add orphan_file and metadata_csum_seed (targets.md §1.5).
# shellcheck disable=SC2034
EXT4_FEATURES_RESOLUTE="metadata_csum,64bit,flex_bg,huge_file,dir_nlink,extra_isize,orphan_file,metadata_csum_seed"

# ext4_build TARGET ROOTDIR EXTRA_DEBUGFS MKE2FS_OPTION...: mke2fs -d ROOTDIR
# onto TARGET (a file of the final size, or a block device), then pin what
# mke2fs copies from the staging tree and that we cannot fix beforehand:
# ownership (the staging tree belongs to whoever runs the script) and
# atime/ctime (ctime cannot be set on the host; atime moves when mke2fs reads).
# EXTRA_DEBUGFS is a file of further debugfs commands (may be /dev/null).
ext4_build() {
	local target=$1 root=$2 extra=$3 rel path err
	shift 3
	[[ -n ${WORK:-} ]] || die "ext4_build: WORK is not set"
	write_mke2fs_conf "$WORK/mke2fs.conf"
	find "$root" -exec touch -h -d "@$FIXTURE_EPOCH" {} +
	MKE2FS_CONFIG="$WORK/mke2fs.conf" run mke2fs -F -q -t ext4 "$@" -d "$root" "$target"
	{
		while IFS= read -r rel; do
			path=${rel#.}
			[[ -n $path ]] || path=/
			printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$path" "$path"
			printf 'sif "%s" %s @%s\n' "$path" atime "$FIXTURE_EPOCH" "$path" ctime "$FIXTURE_EPOCH" "$path" mtime "$FIXTURE_EPOCH"
		done < <(cd "$root" && find . | sort)
		cat "$extra"
	} >"$WORK/debugfs.cmds"
	# debugfs exits 0 even when a command fails; its only legitimate stderr
	# line is the version banner.
	err=$(debugfs -w -f "$WORK/debugfs.cmds" "$target" 2>&1 >/dev/null | grep -v '^debugfs [0-9]' || true)
	[[ -z $err ]] || die "debugfs on $target: $err"
}

# fat_fill IMAGE SRCDIR: copy SRCDIR into the root of the FAT in IMAGE (a file
# or device, optionally "file@@offset"), directories first and in sorted
# order so cluster allocation is the same on every run.
fat_fill() {
	local img=$1 src=$2 rel
	while IFS= read -r rel; do
		if [[ -d "$src/$rel" ]]; then
			run mmd -i "$img" "::$rel"
		else
			run mcopy -o -m -i "$img" "$src/$rel" "::$rel"
		fi
	done < <(cd "$src" && find . -mindepth 1 | sed 's|^\./||' | sort)
}

# fat_build TARGET SRCDIR MKFS_VFAT_OPTION...: --invariant pins the volume
# label's directory entry time; callers pass -i SERIAL for the volume id.
fat_build() {
	local target=$1 src=$2
	shift 2
	run mkfs.vfat --invariant "$@" "$target"
	find "$src" -exec touch -h -d "@$FIXTURE_EPOCH" {} +
	fat_fill "$target" "$src"
}
