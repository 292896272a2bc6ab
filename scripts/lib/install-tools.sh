# shellcheck shell=bash
# scripts/lib/install-tools.sh — make sure the programs the fixtures and the
# tests call are installed, installing the Debian packages of missing ones (as
# root, or through sudo; apt-get update first). Sourced by scripts/test and
# scripts/quickstart; defines ensure_tools. The caller defines `die`.

ensure_tools() {
	# Programs the fixture scripts and the tests call, with the Debian 12 package
	# that ships each. Only the packages of missing programs are installed, so a
	# run on a prepared machine never touches apt.
	tools=(
		sfdisk:fdisk sgdisk:gdisk
		mkfs.vfat:dosfstools fsck.fat:dosfstools
		mcopy:mtools mmd:mtools mdir:mtools
		mke2fs:e2fsprogs e2fsck:e2fsprogs debugfs:e2fsprogs tune2fs:e2fsprogs dumpe2fs:e2fsprogs
		blkid:util-linux setpriv:util-linux xz:xz-utils gzip:gzip shellcheck:shellcheck
		cloud-init:cloud-init netplan:netplan.io systemd-analyze:systemd perl:perl
		bmaptool:bmap-tools bc:bc
		zstd:zstd gpg:gnupg gpgconf:gnupg gpg-agent:gnupg
	)

	packages=()
	want() { # PACKAGE: add once
		local p
		for p in "${packages[@]}"; do [[ $p == "$1" ]] && return; done
		packages+=("$1")
	}
	for t in "${tools[@]}"; do
		command -v "${t%%:*}" >/dev/null 2>&1 || want "${t#*:}"
	done
	# Debian's python3 with PyYAML for the YAML round trips. The tests call
	# /usr/bin/python3 by path: a pyenv python3 earlier in PATH lacks yaml.
	[[ -x /usr/bin/python3 ]] || want python3
	/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || want python3-yaml

	if ((${#packages[@]} > 0)); then
		echo "installing: ${packages[*]}"
		as_root=()
		if ((EUID != 0)); then
			command -v sudo >/dev/null 2>&1 ||
				die "not root and no sudo: install these Debian packages first: ${packages[*]}"
			# -n: never wait for a password when nobody can type one.
			if [[ -n ${CI:-} || ! -t 0 ]]; then as_root=(sudo -n); else as_root=(sudo); fi
		fi
		"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
		"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends "${packages[@]}" </dev/null
		for t in "${tools[@]}"; do
			command -v "${t%%:*}" >/dev/null 2>&1 || die "${t%%:*} is still missing after apt-get install"
		done
		/usr/bin/python3 -c 'import yaml' 2>/dev/null ||
			die "/usr/bin/python3 cannot import yaml after installing python3-yaml"
	else
		echo "all present: ${tools[*]%%:*} python3-yaml"
	fi

}
