# shellcheck shell=bash
# Contents of the files staged into the fixtures by scripts/make-fixtures:
# accounts, os-release variants, and the Ubuntu system-boot texts (abbreviated
# stand-ins with the lines that matter; targets.md §1.6). Sourced after
# fixture-common.sh, which provides `put`.

# passwd/group/shadow/gshadow with a few system entries (Ubuntu/Debian style).
# $1 = root password hash ("*" locks the account, as Ubuntu ships it).
stage_accounts() {
	local root=$1 roothash=$2
	put "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
systemd-timesync:x:996:996:systemd Time Synchronization:/:/usr/sbin/nologin
messagebus:x:100:102::/nonexistent:/usr/sbin/nologin
sshd:x:101:65534::/run/sshd:/usr/sbin/nologin
EOF
	put "$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:syslog
tty:x:5:
disk:x:6:
dialout:x:20:
cdrom:x:24:
sudo:x:27:
audio:x:29:
dip:x:30:
shadow:x:42:
video:x:44:
plugdev:x:46:
users:x:100:
nogroup:x:65534:
systemd-network:x:998:
systemd-timesync:x:996:
messagebus:x:102:
netdev:x:103:
EOF
	put "$root/etc/shadow" <<EOF
root:${roothash}:19675:0:99999:7:::
daemon:*:19675:0:99999:7:::
bin:*:19675:0:99999:7:::
sys:*:19675:0:99999:7:::
sync:*:19675:0:99999:7:::
nobody:*:19675:0:99999:7:::
systemd-network:!*:19675::::::
systemd-timesync:!*:19675::::::
messagebus:!:19675::::::
sshd:!:19675::::::
EOF
	put "$root/etc/gshadow" <<'EOF'
root:*::
daemon:*::
bin:*::
sys:*::
adm:*::syslog
tty:*::
disk:*::
dialout:*::
cdrom:*::
sudo:*::
audio:*::
dip:*::
shadow:*::
video:*::
plugdev:*::
users:*::
nogroup:*::
systemd-network:!*::
systemd-timesync:!*::
messagebus:!::
netdev:!::
EOF
	chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
	mkdir -p "$root/root"
	chmod 0700 "$root/root"
}

# debugfs commands for what stage_accounts needs beyond root:root.
accounts_debugfs() {
	printf 'sif /etc/shadow gid 42\nsif /etc/gshadow gid 42\n'
}

# The usrmerge symlinks and other things every Debian-family root has.
stage_base_root() {
	local root=$1
	mkdir -p "$root/usr/bin" "$root/usr/lib" "$root/usr/sbin" "$root/var/lib" \
		"$root/home" "$root/etc/systemd/system/multi-user.target.wants" "$root/tmp"
	chmod 1777 "$root/tmp"
	ln -s usr/bin "$root/bin"
	ln -s usr/lib "$root/lib"
	ln -s usr/sbin "$root/sbin"
	# Dangling on purpose: points into /run, which is empty in an image.
	ln -s ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
	printf '127.0.0.1 localhost\n::1 ip6-localhost ip6-loopback\n' | put "$root/etc/hosts"
}

os_release_noble() {
	cat <<'EOF'
PRETTY_NAME="Ubuntu 24.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.3 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
EOF
}

os_release_resolute() {
	cat <<'EOF'
PRETTY_NAME="Ubuntu 26.04 LTS"
NAME="Ubuntu"
VERSION_ID="26.04"
VERSION="26.04 LTS (Resolute Raccoon)"
VERSION_CODENAME=resolute
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=resolute
LOGO=ubuntu-logo
EOF
}

os_release_bookworm() {
	cat <<'EOF'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
EOF
}

# ---------------------------------------------------------------------------
# Ubuntu raspi (targets.md §1.3–1.6)
# ---------------------------------------------------------------------------

ubuntu_cmdline() {
	echo 'console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc'
}

# Abbreviated noble config.txt: every key line and section of the real one.
ubuntu_config_body() {
	cat <<'EOF'
[all]
kernel=vmlinuz
cmdline=cmdline.txt
initramfs initrd.img followkernel

[pi4]
max_framebuffers=2
arm_boost=1

[all]
# Enable the audio output, I2C and SPI interfaces on the GPIO header. As these
# parameters related to the base device-tree they must appear *before* any
# other dtoverlay= specification
dtparam=audio=on
dtparam=i2c_arm=on
dtparam=spi=on

# Comment out the following line if the edges of the desktop appear outside
# the edges of your display
disable_overscan=1

# Enable the KMS ("full" KMS) graphics overlay, leaving firmware KMS setup off
dtoverlay=vc4-kms-v3d
disable_fw_kms_setup=1

# Enable the serial pins
enable_uart=1

# Autoload overlays for any recognized cameras or displays that are attached
# to the CSI/DSI ports.
camera_auto_detect=1
display_auto_detect=1

# Config settings specific to arm64
arm_64bit=1
dtoverlay=dwc2

[pi3+]
dtoverlay=vc4-kms-v3d,cma-128

[pi02]
dtoverlay=vc4-kms-v3d,cma-128

[cm4]
# Enable the USB2 outputs on the IO board (assuming your CM4 is plugged into
# such a board)
dtoverlay=dwc2,dr_mode=host

[all]
EOF
}

ubuntu_user_data() {
	cat <<'EOF'
#cloud-config

# This is the user-data configuration file for cloud-init. By default this sets
# up an initial user called "ubuntu" with password "ubuntu", which must be
# changed at first login. However, many additional actions can be initiated on
# first boot from this file (see the examples below).

# On first boot, set the (default) ubuntu user's password to "ubuntu" and
# expire user passwords
chpasswd:
  expire: true
  users:
  - name: ubuntu
    password: ubuntu
    type: text

# Enable password authentication with the SSH daemon
ssh_pwauth: false

## Set the system's hostname. Please note that, unless you have a local DNS
## setup where the hostname is derived from DHCP requests (as with dnsmasq),
## setting the hostname here will not make the machine reachable by this name.
#hostname: my-pi

## Run arbitrary commands at rc.local like time
#runcmd:
#- [ ls, -l, / ]
EOF
}

ubuntu_meta_data() {
	printf 'dsmode: local\ninstance_id: cloud-image\n'
}

ubuntu_network_config() {
	cat <<'EOF'
# This file contains a netplan-compatible configuration which cloud-init will
# apply on first-boot (note: it will *not* update the config after the first
# boot). Please refer to the cloud-init documentation and the netplan reference
# for full details:
#
# https://netplan.io/reference
# https://cloudinit.readthedocs.io/en/latest/topics/network-config.html
#
# Some additional examples are commented out below

network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
      optional: true
#  wifis:
#    wlan0:
#      dhcp4: true
#      optional: true
#      access-points:
#        myhomewifi:
#          password: "S3kr1t"
EOF
}

ubuntu_readme() {
	cat <<'EOF'
==================
The Boot Partition
==================

(homelab-image fixture stand-in for the README Ubuntu ships on system-boot.)

user-data, meta-data and network-config are read by cloud-init on first boot
(NoCloud datasource, this partition is found by its label "system-boot").
"ds=nocloud-net;seedfrom=http://10.0.0.2:8000/" can be appended to the first
line of cmdline.txt; network-config is *not* sourced from remote seeds.
EOF
}

# ubuntu_initrd PATH: a small initramfs laid out as Ubuntu 24.04's is for an
# NBD root (what `serve` looks for before it serves a node): an early
# uncompressed cpio, then a zstd-compressed one holding nbd-client, the
# initramfs-tools nbd script and the nbd module. Reproducible: fixed
# times, owners and inode numbers (cpio --reproducible).
ubuntu_initrd() {
	local t out=$1
	t=$(mktemp -d)
	mkdir -p "$t/early/kernel/x86/microcode" "$t/main/usr/sbin" "$t/main/scripts/local-top" \
		"$t/main/usr/lib/modules/6.8.0-1004-raspi/kernel/drivers/block"
	printf 'early microcode stand-in\n' >"$t/early/kernel/x86/microcode/AuthenticAMD.bin"
	printf '\177ELF nbd-client stand-in\n' >"$t/main/usr/sbin/nbd-client"
	printf '#!/bin/sh\n# nbd root stand-in\n' >"$t/main/scripts/local-top/nbd"
	printf 'nbd module stand-in\n' >"$t/main/usr/lib/modules/6.8.0-1004-raspi/kernel/drivers/block/nbd.ko.zst"
	chmod 755 "$t/main/usr/sbin/nbd-client" "$t/main/scripts/local-top/nbd"
	ln -s usr/sbin "$t/main/sbin"
	ln -s usr/lib "$t/main/lib"
	find "$t" -exec touch -h -d @1577836800 {} +
	mkdir -p "$(dirname "$out")"
	{
		(cd "$t/early" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible)
		(cd "$t/main" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible | zstd -q -19 -c)
	} >"$out"
	rm -rf "$t"
}

# stage_bootloader_releases ROOT: the rpi-eeprom package's bootloader files
# under /lib/firmware/raspberrypi (usrmerged: /usr/lib), which `firmware
# card` reads. Made by scripts/lib/eeprom-fixture.py (the real section
# layout; see there). Two releases in 2711/default, so "newest" is tested
# (the older one has a file after bootconf.txt; the newer one an update
# timestamp in the reserved last 4 KiB); a recovery.bin stand-in wherever
# the package has one, except 2712/default, so a Pi 5 card without it is
# tested too.
stage_bootloader_releases() {
	local fw=$1/usr/lib/firmware/raspberrypi
	mkdir -p "$fw/bootloader-2711/default" "$fw/bootloader-2711/latest" \
		"$fw/bootloader-2712/default" "$fw/bootloader-2712/latest"
	python3 "$EEPROM_FIXTURE" build 2711 2024-04-15 "$fw/bootloader-2711/default/pieeprom-2024-04-15.bin" --after-bootconf
	python3 "$EEPROM_FIXTURE" build 2711 2025-01-10 "$fw/bootloader-2711/default/pieeprom-2025-01-10.bin" --stamp
	put_blob "$fw/bootloader-2711/default/recovery.bin" "rpi-eeprom 2711 default recovery.bin" 32768
	python3 "$EEPROM_FIXTURE" build 2711 2025-05-08 "$fw/bootloader-2711/latest/pieeprom-2025-05-08.bin"
	put_blob "$fw/bootloader-2711/latest/recovery.bin" "rpi-eeprom 2711 latest recovery.bin" 32768
	python3 "$EEPROM_FIXTURE" build 2712 2025-01-10 "$fw/bootloader-2712/default/pieeprom-2025-01-10.bin"
	python3 "$EEPROM_FIXTURE" build 2712 2025-02-12 "$fw/bootloader-2712/latest/pieeprom-2025-02-12.bin"
	put_blob "$fw/bootloader-2712/latest/recovery.bin" "rpi-eeprom 2712 latest recovery.bin" 32768
}
