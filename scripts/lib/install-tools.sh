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
		mcopy:mtools mmd:mtools mdir:mtools mshowfat:mtools losetup:mount cmp:diffutils
		mke2fs:e2fsprogs e2fsck:e2fsprogs debugfs:e2fsprogs tune2fs:e2fsprogs dumpe2fs:e2fsprogs
		blkid:util-linux setpriv:util-linux partx:util-linux flock:util-linux fallocate:util-linux xz:xz-utils gzip:gzip shellcheck:shellcheck
		cloud-init:cloud-init netplan:netplan.io systemd-analyze:systemd perl:perl
		bmaptool:bmap-tools bc:bc mkfs.xfs:xfsprogs tftp:tftp-hpa curl:curl
		chromium-headless-shell:chromium-headless-shell
		zstd:zstd gpg:gnupg gpgconf:gnupg gpg-agent:gnupg
		dnsmasq:dnsmasq-base ip:iproute2
		cpio:cpio lz4:lz4 bzip2:bzip2 lzma:xz-utils
		git:git ssh-keygen:openssh-client ssh:openssh-client sshd:openssh-server sudo:sudo mkfifo:coreutils getent:libc-bin mount:mount swapon:mount mkswap:util-linux
		nbdinfo:libnbd-bin qemu-img:qemu-utils qemu-io:qemu-utils timeout:coreutils
		openssl:openssl sha256sum:coreutils kubectl:kubernetes-client
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
	# GNU time measures a command's peak memory (the streaming tests); the
	# shell keyword `time` would satisfy `command -v`, so test the file.
	[[ -x /usr/bin/time ]] || want time

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
		[[ -x /usr/bin/time ]] || die "/usr/bin/time is still missing after installing time"
	else
		echo "all present: ${tools[*]%%:*} python3-yaml time"
	fi

}

# The Debian mirror this machine's apt uses (the first http(s) URI of a
# bookworm suite), so debootstrap and the backports suite use the same one.
debian_mirror() {
	local m
	m=$(grep -hs -E '^(deb[[:space:]]|URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources |
		grep -oE 'https?://[^[:space:]]+/debian/?' | grep -v -- '-security' | head -n1 || true)
	printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# Runs its arguments as root (sudo -n without a terminal), stdin passed on.
run_as_root() {
	local as_root=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot run: $*"
		if [[ -n ${CI:-} || ! -t 0 ]]; then as_root=(sudo -n); else as_root=(sudo); fi
	fi
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive "$@"
}

# apt_install_split: installs the caller's `packages` from the default
# suites and its `backports` from bookworm-backports (adding that suite to
# apt's sources first when missing), as root; apt-get update once.
apt_install_split() {
	if ((${#backports[@]} > 0)) &&
		! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		local mirror
		mirror=$(debian_mirror)
		echo "adding bookworm-backports ($mirror) to apt sources for ${backports[*]}"
		printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$mirror" | run_as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
	fi
	if ((${#packages[@]} + ${#backports[@]} > 0)); then
		run_as_root apt-get update </dev/null
	fi
	if ((${#packages[@]} > 0)); then
		echo "installing: ${packages[*]}"
		run_as_root apt-get install -y --no-install-recommends "${packages[@]}" </dev/null
	fi
	if ((${#backports[@]} > 0)); then
		echo "installing from bookworm-backports: ${backports[*]}"
		run_as_root apt-get install -y --no-install-recommends -t bookworm-backports "${backports[@]}" </dev/null
	fi
}

# ensure_e2e_tools: what scripts/e2e-boot needs to build an arm64 Debian root
# and boot it, and to boot the amd64 cloud-image replica. Installs only what
# is missing, so a prepared machine never touches apt.
#   qemu-system-aarch64, qemu-system-x86_64, qemu-user-static: from
#                        bookworm-backports. These machines carry qemu-utils
#                        10 from backports, which Debian 12's qemu 7.2
#                        cannot be installed beside.
#   mmdebstrap + arch-test, binfmt-support: the arm64 root is made on the
#                        amd64 host, its maintainer scripts run under
#                        qemu-user through binfmt_misc.
#   ssh-keygen           the test user's key; zstd: the cached root tarball.
ensure_e2e_tools() {
	local tools=(
		mmdebstrap:mmdebstrap arch-test:arch-test update-binfmts:binfmt-support
		ssh-keygen:openssh-client zstd:zstd
		sfdisk:fdisk sgdisk:gdisk mkfs.vfat:dosfstools fsck.fat:dosfstools mcopy:mtools mtype:mtools
		mke2fs:e2fsprogs debugfs:e2fsprogs e2fsck:e2fsprogs tune2fs:e2fsprogs timeout:coreutils
	)
	local packages=() backports=() t p seen
	for t in "${tools[@]}"; do
		command -v "${t%%:*}" >/dev/null 2>&1 && continue
		seen=0
		for p in "${packages[@]}"; do [[ $p == "${t#*:}" ]] && seen=1; done
		((seen)) || packages+=("${t#*:}")
	done
	[[ -x /usr/bin/python3 ]] || packages+=(python3)
	/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || packages+=(python3-yaml)
	command -v qemu-system-aarch64 >/dev/null 2>&1 || backports+=(qemu-system-arm)
	command -v qemu-system-x86_64 >/dev/null 2>&1 || backports+=(qemu-system-x86)
	# The static aarch64 emulator that binfmt_misc runs (qemu 10 moved it out
	# of qemu-user-static, now a transitional package, into qemu-user).
	[[ -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P || -x /usr/bin/qemu-aarch64-static ]] ||
		backports+=(qemu-user-static)

	apt_install_split
	for t in "${tools[@]}" qemu-system-aarch64:qemu-system-arm qemu-system-x86_64:qemu-system-x86; do
		command -v "${t%%:*}" >/dev/null 2>&1 || die "${t%%:*} is still missing after apt-get install"
	done

	# Foreign-architecture chroots need binfmt_misc with the aarch64 entry; in
	# a container nothing mounts it or runs binfmt-support's service.
	local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
	if [[ ! -e $entry ]] || ! grep -qx enabled "$entry"; then
		[[ -e /proc/sys/fs/binfmt_misc/register ]] ||
			run_as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
			die "cannot mount binfmt_misc: arm64 chroots need it"
		if [[ -e $entry ]]; then
			# Registered but switched off: switch it on.
			echo 1 | run_as_root tee "$entry" >/dev/null || die "cannot enable $entry"
		else
			register_binfmt_aarch64 ||
				die "cannot register qemu-aarch64 with binfmt_misc (no binfmt.d file, and update-binfmts failed)"
		fi
	fi
	grep -qx enabled "$entry" || die "$entry is not enabled after registering it"
	echo "e2e tools present: qemu-system-aarch64 $(qemu-system-aarch64 --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1), qemu-system-x86_64 $(qemu-system-x86_64 --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1), mmdebstrap $(mmdebstrap --version | grep -oE '[0-9.]+$'), binfmt $(sed -n 's/^interpreter //p' "$entry")"
}

# ensure_netboot_e2e_tools: ensure_e2e_tools plus what scripts/e2e/netboot
# and scripts/e2e/nbd-root-proof call: ip (the namespace and its tap), curl
# (the TFTP client), nbdinfo, qemu-nbd and qemu-img (NBD client, and the
# stand-in server of nbd-root-proof; qemu-utils from bookworm-backports, as
# beside qemu 10 above), headless Chromium (the status page).
ensure_netboot_e2e_tools() {
	ensure_e2e_tools
	local tools=(ip:iproute2 curl:curl nbdinfo:libnbd-bin cmp:diffutils
		chromium-headless-shell:chromium-headless-shell)
	local packages=() backports=() t
	for t in "${tools[@]}"; do
		command -v "${t%%:*}" >/dev/null 2>&1 || packages+=("${t#*:}")
	done
	command -v qemu-nbd >/dev/null 2>&1 && command -v qemu-img >/dev/null 2>&1 || backports+=(qemu-utils)
	apt_install_split
	for t in "${tools[@]}" qemu-nbd:qemu-utils qemu-img:qemu-utils; do
		command -v "${t%%:*}" >/dev/null 2>&1 || die "${t%%:*} is still missing after apt-get install"
	done
}

# register_binfmt_aarch64: register the qemu-aarch64 interpreter with
# binfmt_misc. qemu 10 (bookworm-backports) ships its entries for systemd's
# binfmt.d (/usr/lib/binfmt.d/qemu-aarch64.conf), not for binfmt-support, so
# `update-binfmts --enable` says "not in database" on a fresh machine. Do what
# systemd-binfmt does: write the file's rule lines to the register file (the
# first of /etc, /run, /usr/lib wins, as in binfmt.d(5)); fall back to
# binfmt-support for the older packages that use it.
register_binfmt_aarch64() {
	local dir conf line
	for dir in /etc/binfmt.d /run/binfmt.d /usr/local/lib/binfmt.d /usr/lib/binfmt.d; do
		[[ -f $dir/qemu-aarch64.conf ]] && {
			conf=$dir/qemu-aarch64.conf
			break
		}
	done
	if [[ -n ${conf:-} ]]; then
		echo "registering qemu-aarch64 from $conf"
		while IFS= read -r line || [[ -n $line ]]; do
			[[ -z $line || $line == '#'* || $line == ';'* ]] && continue
			printf '%s' "$line" | run_as_root tee /proc/sys/fs/binfmt_misc/register >/dev/null || return 1
		done <"$conf"
		[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] && return 0
		echo "warning: $conf registered no qemu-aarch64 entry; trying update-binfmts" >&2
	fi
	run_as_root update-binfmts --enable qemu-aarch64
}
