#!/usr/bin/python3
"""scripts/e2e/check.py --image IMG --expect EXPECT.json [--report DIR]

Judges a replica image after its first boot under qemu, from the disk image
alone (the guest has powered off): e2fsck/fsck.fat, files read with debugfs
and mtools, and the report the e2e observer unit left in /var/lib/e2e/.
Prints one line per check ("ok" or "FAIL ... expected ..., got ...") and
exits 1 if any check failed. --report DIR receives a copy of the guest's
/var/lib/e2e (DIR/e2e/: the observer's report/, the stand-ins' logs) for a
human to read.

EXPECT.json (written by scripts/e2e-boot; absent keys skip their checks):
  kind               "ubuntu" | "armbian" | "vm" | "vm-seed"
  root_partition     partition number of the ext4 root
  boot_partition     partition number of the FAT system-boot (ubuntu)
  other_partitions   [{"number", "fs": "ext4"|"fat"}]: more file systems that
                     must pass e2fsck -fn / fsck.fat -n (a cloud image's
                     /boot and ESP)
  seed_disk          {"path", "label", "files"}: a NoCloud seed image (FAT,
                     whole disk) the guest had as a second disk: passes
                     fsck.fat -n, carries the volume label and the files
  disk_size          bytes the image file must have (vm.disk_size)
  grown_root         true: the first boot grew the root partition to the end
                     of the disk (growpart) and its file system to the
                     partition (resize2fs)
  hostname           expected hostname (file and runtime)
  user               {"name", "key": authorized_keys line, "sudo_nopasswd": bool}
  ssh_login          true: the host logged in over SSH during the boot
  network            {"interface", "mac", "address": "a.b.c.d/n", "gateway",
                      "netplan_file": path the address must be rendered in,
                      "match_mac": true: that netplan entry matches the NIC
                      by MAC and renames it to the interface (set-name)}
  cloud_init         true: must have run with no errors; false: must be absent
  cloud_init_seed    {"seed": where cloud-init's NoCloud read its seed (the
                      [seed=...] of `cloud-init status`: a device or the
                      seed directory), "subplatform": the instance data's
                      v1.subplatform, "instance_id": v1.instance_id}
  cmdline_tokens     tokens that must be on the running kernel's command line
  snaps              {"NAME": "CHANNEL"}: installed by first boot at CHANNEL
  snaps_held         true: `snap refresh --hold` ran for all of them
  snap_commands      commands that must exist in /snap/bin (made by the snap
                     stand-in on install) and nowhere on a default PATH
  preseed            host path of the file `microcloud preseed` must have read
  firstboot_unit     true: homelab-firstboot.service ran and is active
  absent             paths that must not exist in the root
  locked_accounts    accounts whose shadow password must be locked
  allowed_failed_units  units allowed in `systemctl --failed`
  raw_regions        [{"offset", "file"}]: bytes outside the partitions (a
                     bootloader) that must be unchanged
  bootloader         {"preset_file", "conf_path", "status"}: the profile's
                     `firmware` preset is in the image at conf_path, the
                     stand-in rpi-eeprom-config was asked for the installed
                     configuration and then called with --apply conf_path
                     (and read the preset), and firstboot.status has
                     bootloader=status; null: the stand-in was never called
                     and the status file has no bootloader= line
  k3s                {"role": "server"|"agent", "config": host path of the
                     rendered config.yaml, "cmdline": tokens}: the stand-in
                     k3s (scripts/e2e/k3s-stand-in) ran as `k3s ROLE` under
                     systemd (NOTIFY_SOCKET and INVOCATION_ID set) from the
                     role's unit, which first boot enabled (and not the
                     other one), read exactly that config.yaml, and
                     firstboot.status says k3s=ROLE; the tokens are on the
                     running kernel's command line
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

RESULTS = []


def record(ok, what, detail=""):
    RESULTS.append(ok)
    line = ("ok    " if ok else "FAIL  ") + what
    if detail:
        line += ": " + detail
    print(line, flush=True)


def expect_eq(what, expected, got):
    if expected == got:
        record(True, what, repr(got))
    else:
        record(False, what, "expected %r, got %r" % (expected, got))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def partition_table(path):
    """sfdisk's table of a disk image, its partitions keyed by number (a
    cloud image's GPT lists p1, p14, p15, p16: not positions)."""
    t = json.loads(run(["sfdisk", "--json", path]).stdout)["partitiontable"]
    # sfdisk names partition N "<device>N", or "<device>pN" after a digit.
    t["by_number"] = {int(p["node"][len(t["device"]):].lstrip("p")): p for p in t["partitions"]}
    return t


class Image:
    def __init__(self, path, root_part, boot_part):
        self.path = path
        parts = partition_table(path)
        sector = parts.get("sectorsize", 512)
        self.sector = sector
        self.offsets = {n: p["start"] * sector for n, p in parts["by_number"].items()}
        self.sizes = {n: p["size"] * sector for n, p in parts["by_number"].items()}
        self.root = "%s?offset=%d" % (path, self.offsets[root_part])
        self.boot_part = boot_part

    def debugfs(self, request):
        r = run(["debugfs", "-R", request, self.root])
        return r.stdout, r.stderr

    def exists(self, path):
        _, err = self.debugfs("stat " + path)
        return "File not found" not in err and "not found" not in err

    def read(self, path):
        """Text of a regular file in the root, or None when it is missing."""
        if not self.exists(path):
            return None
        with tempfile.TemporaryDirectory() as d:
            dst = os.path.join(d, "f")
            self.debugfs("dump %s %s" % (path, dst))
            if not os.path.exists(dst):
                return None
            with open(dst, "rb") as f:
                return f.read().decode("utf-8", "replace")

    def stat_uid_mode(self, path):
        out, _ = self.debugfs("stat " + path)
        m = re.search(r"Mode:\s+(\d+)", out)
        u = re.search(r"User:\s+(\d+)", out)
        return (int(u.group(1)) if u else None, int(m.group(1), 8) if m else None)

    def ls(self, path):
        out, err = self.debugfs("ls -l " + path)
        if "not found" in err:
            return None
        names = []
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 9 and f[-1] not in (".", ".."):
                names.append(f[-1])
        return names

    def rdump(self, path, dst):
        os.makedirs(dst, exist_ok=True)
        self.debugfs("rdump %s %s" % (path, dst))

    def fat_read(self, name):
        off = self.offsets[self.boot_part]
        r = run(["mtype", "-i", "%s@@%d" % (self.path, off), "::" + name])
        return r.stdout if r.returncode == 0 else None


def fsck_fat(path, what):
    r = run(["fsck.fat", "-n", path])
    record(r.returncode == 0, "fsck.fat -n " + what,
           "clean" if r.returncode == 0 else "exit %d: %s" % (r.returncode, (r.stdout + r.stderr)[-800:]))


def check_filesystems(img, exp):
    r = run(["e2fsck", "-fn", img.root])
    record(r.returncode == 0, "e2fsck -fn root partition %d" % exp["root_partition"],
           "clean" if r.returncode == 0 else "exit %d: %s" % (r.returncode, r.stdout[-800:]))
    fats = [exp["boot_partition"]] if exp.get("boot_partition") else []
    for other in exp.get("other_partitions", []):
        p = other["number"]
        if p not in img.offsets:
            record(False, "partition %d" % p, "expected it, the table has %r" % sorted(img.offsets))
        elif other["fs"] == "fat":
            fats.append(p)
        else:
            r = run(["e2fsck", "-fn", "%s?offset=%d" % (img.path, img.offsets[p])])
            record(r.returncode == 0, "e2fsck -fn partition %d" % p,
                   "clean" if r.returncode == 0 else "exit %d: %s" % (r.returncode, r.stdout[-800:]))
    for p in fats:
        with tempfile.TemporaryDirectory() as d:
            copy = os.path.join(d, "fat")
            subprocess.run(["dd", "if=" + img.path, "of=" + copy, "bs=1M", "conv=sparse", "status=none",
                            "iflag=skip_bytes,count_bytes", "skip=%d" % img.offsets[p],
                            "count=%d" % img.sizes[p]], check=True)
            fsck_fat(copy, "partition %d" % p)


def check_seed_disk(exp):
    """The NoCloud seed disk the guest had: a FAT file system on the whole
    disk, labelled for cloud-init, holding the seed's files."""
    s = exp["seed_disk"]
    fsck_fat(s["path"], os.path.basename(s["path"]))
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    r = run(["mlabel", "-s", "-i", s["path"], "::"], env=env)
    # mlabel -s prints " Volume label is CIDATA" (or "has no label").
    m = re.search(r"Volume label is (\S+)", r.stdout)
    expect_eq("%s volume label" % os.path.basename(s["path"]), s["label"], m.group(1) if m else r.stdout.strip())
    r = run(["mdir", "-b", "-i", s["path"], "::"], env=env)
    names = sorted(os.path.basename(l.strip()) for l in r.stdout.splitlines() if l.strip())
    expect_eq("%s files" % os.path.basename(s["path"]), sorted(s["files"]), names)


def check_disk_size(img, exp):
    expect_eq("image file size (vm.disk_size)", exp["disk_size"], os.path.getsize(img.path))


def check_grown_root(img, exp):
    """growpart moved the root partition's end to the disk's last usable
    sector (the backup GPT takes the last 33) and resize2fs grew the file
    system to the partition."""
    n = exp["root_partition"]
    disk = os.path.getsize(img.path)
    end = img.offsets[n] + img.sizes[n]
    # growpart leaves at most the alignment it keeps below 1 MiB unused.
    slack = disk - 33 * img.sector - end
    record(0 <= slack < 1 << 20, "root partition %d grown to the end of the disk" % n,
           "ends %d bytes before the backup GPT (disk %d bytes)" % (slack, disk))
    out = run(["dumpe2fs", "-h", img.root]).stdout
    blocks = re.search(r"^Block count:\s+(\d+)", out, re.M)
    bsize = re.search(r"^Block size:\s+(\d+)", out, re.M)
    fs = int(blocks.group(1)) * int(bsize.group(1)) if blocks and bsize else None
    record(fs is not None and 0 <= img.sizes[n] - fs < 1 << 20,
           "root file system grown to its partition (resize2fs)",
           "file system %r bytes, partition %d bytes" % (fs, img.sizes[n]))


def parse_env(text):
    env = {}
    for line in (text or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


def check_observer(img):
    env = parse_env(img.read("/var/lib/e2e/report/observer.env"))
    if not env:
        record(False, "observer report", "no /var/lib/e2e/report/observer.env: the observer never finished")
        return None
    expect_eq("observer finished waiting", "ok", env.get("result"))
    return env


def check_hostname(img, exp):
    h = exp["hostname"]
    expect_eq("/etc/hostname", h, (img.read("/etc/hostname") or "").strip())
    expect_eq("runtime hostname", h, (img.read("/var/lib/e2e/report/hostname.txt") or "").strip())


def check_user(img, exp):
    u = exp["user"]
    name = u["name"]
    passwd = img.read("/etc/passwd") or ""
    entry = next((l.split(":") for l in passwd.splitlines() if l.split(":")[0] == name), None)
    if entry is None:
        record(False, "user %s in /etc/passwd" % name, "expected an entry, got none")
        return
    record(True, "user %s in /etc/passwd" % name, ":".join(entry))
    uid, home = int(entry[2]), entry[5]
    keys_path = home + "/.ssh/authorized_keys"
    keys = img.read(keys_path)
    if keys is None:
        record(False, keys_path, "expected the file, it is missing")
    else:
        lines = [l.strip() for l in keys.splitlines() if l.strip()]
        want = u["key"].strip()
        # Compare type and base64 only: comments may be rewritten.
        got_keys = [" ".join(l.split()[:2]) for l in lines]
        record(" ".join(want.split()[:2]) in got_keys, keys_path + " holds the test key",
               "expected %s..., got %r" % (want[:40], [k[:40] + "..." for k in got_keys]))
        owner, mode = img.stat_uid_mode(keys_path)
        expect_eq(keys_path + " owner uid", uid, owner)
        record(mode is not None and mode & 0o022 == 0, keys_path + " not group/other writable",
               "mode %s" % (oct(mode) if mode is not None else None))
    passwd_rt = img.read("/var/lib/e2e/report/passwd.txt") or ""
    record(any(l.split(":")[0] == name for l in passwd_rt.splitlines()),
           "user %s known to the running system (getent passwd)" % name)


def check_ssh_login(img, exp):
    got = parse_env(img.read("/var/lib/e2e/ssh-login"))
    if not got:
        record(False, "ssh login", "expected /var/lib/e2e/ssh-login left by the host's ssh + sudo -n, missing")
        return
    expect_eq("ssh login: user", exp["user"]["name"], got.get("user"))
    expect_eq("ssh login: hostname", exp.get("hostname"), got.get("hostname"))


def netplan_has_address(doc, address, mac):
    eths = ((doc or {}).get("network") or {}).get("ethernets") or {}
    bridges = ((doc or {}).get("network") or {}).get("bridges") or {}
    for name, e in list(eths.items()) + list(bridges.items()):
        if address in [str(a) for a in (e or {}).get("addresses") or []]:
            return name, e
    return None, None


def check_network(img, exp):
    n = exp["network"]
    addr, iface = n["address"], n["interface"]
    if n.get("netplan_file"):
        path = n["netplan_file"]
        text = img.read(path)
        if text is None:
            names = img.ls("/etc/netplan")
            record(False, "netplan %s" % path, "expected the file, got only %r in /etc/netplan" % names)
        else:
            doc = yaml.safe_load(text)
            name, e = netplan_has_address(doc, addr, n.get("mac"))
            record(name is not None, "netplan %s has %s" % (path, addr),
                   "on %s" % name if name else "expected it, got %s" % text.strip().replace("\n", " | "))
            if n.get("match_mac") and e is not None:
                match = e.get("match") or {}
                expect_eq("netplan %s: %s matched by MAC" % (path, name), n["mac"].lower(),
                          str(match.get("macaddress", "")).lower() or None)
                expect_eq("netplan %s: %s renamed by set-name" % (path, name), iface, e.get("set-name"))
            renderer = (doc.get("network") or {}).get("renderer")
            record(renderer in (None, "networkd"), "netplan %s renderer" % path, repr(renderer))
    raw = img.read("/var/lib/e2e/report/ip-addr.json")
    try:
        links = json.loads(raw or "")
    except ValueError:
        record(False, "runtime addresses (ip -j addr)", "unreadable: %r" % (raw or "")[:200])
        return
    link = next((l for l in links if l.get("ifname") == iface), None)
    seen = {l.get("ifname"): ["%s/%s" % (a["local"], a["prefixlen"]) for a in l.get("addr_info", [])
                              if a.get("family") == "inet"] for l in links}
    if link is None:
        record(False, "runtime interface %s" % iface, "expected it, got interfaces %r" % seen)
        return
    if n.get("mac"):
        expect_eq("runtime %s MAC" % iface, n["mac"].lower(), (link.get("address") or "").lower())
    record(addr in seen[iface], "runtime %s has %s" % (iface, addr), "got %r" % seen)
    record("UP" in link.get("flags", []) and link.get("operstate") in ("UP", "UNKNOWN"),
           "runtime %s is up" % iface, "flags %s operstate %s" % (link.get("flags"), link.get("operstate")))
    if n.get("gateway"):
        try:
            routes = json.loads(img.read("/var/lib/e2e/report/ip-route.json") or "")
        except ValueError:
            routes = []
        gws = [r.get("gateway") for r in routes if r.get("dst") == "default"]
        record(n["gateway"] in gws, "runtime default route via %s" % n["gateway"], "got %r" % gws)


def check_cloud_init(img, exp, env):
    if not exp["cloud_init"]:
        record(not img.exists("/usr/bin/cloud-init"), "cloud-init not installed")
        expect_eq("observer saw no cloud-init", "none", (env or {}).get("cloud_init_rc"))
        return
    raw = img.read("/var/lib/e2e/report/cloud-init-status.json")
    try:
        st = json.loads(raw or "")
    except ValueError:
        record(False, "cloud-init status --format json", "unreadable: %r" % (raw or "")[:300])
        return
    expect_eq("cloud-init status", "done", st.get("status"))
    expect_eq("cloud-init errors", [], st.get("errors"))
    rec = st.get("recoverable_errors") or {}
    bad = {k: v for k, v in rec.items() if k != "DEPRECATED"}
    expect_eq("cloud-init recoverable errors other than DEPRECATED", {}, bad)
    for msg in sorted(set(rec.get("DEPRECATED", []))):
        print("note  cloud-init deprecation (allowed): %s" % msg)
    # Where the NoCloud seed came from: the FAT partition labelled
    # system-boot (ubuntu; the virtio disk is vda in the guest), the seed
    # directory in the root (vm) or the CIDATA disk (vm-seed). With
    # ds=nocloud on the kernel command line cloud-init lists "cmdline" as a
    # seed source as well.
    want = exp["cloud_init_seed"]
    detail = st.get("detail") or ""
    m = re.search(r"\[seed=([^\]]*)\]", detail)
    seeds = m.group(1).split(",") if m else []
    record(detail.startswith("DataSourceNoCloud") and want["seed"] in seeds,
           "cloud-init read the NoCloud seed from %s" % want["seed"], "got %r" % detail)
    if want.get("subplatform") or want.get("instance_id"):
        raw = img.read("/var/lib/e2e/report/cloud-init-instance-data.json")
        try:
            v1 = json.loads(raw or "").get("v1") or {}
        except ValueError:
            record(False, "cloud-init instance data", "unreadable: %r" % (raw or "")[:300])
            v1 = None
        if v1 is not None:
            expect_eq("cloud-init instance data: platform", "nocloud", v1.get("platform"))
            if want.get("subplatform"):
                expect_eq("cloud-init instance data: seed (v1.subplatform)", want["subplatform"],
                          v1.get("subplatform"))
            if want.get("instance_id"):
                expect_eq("cloud-init instance data: instance-id of our meta-data", want["instance_id"],
                          v1.get("instance_id"))
    print("note  cloud-init status rc %s (2 = done with recoverable errors)" % (env or {}).get("cloud_init_rc"))


def check_cmdline(img, exp):
    got = (img.read("/var/lib/e2e/report/cmdline.txt") or "").split()
    missing = [t for t in exp["cmdline_tokens"] if t not in got]
    record(not missing, "kernel command line keeps %d expected tokens" % len(exp["cmdline_tokens"]),
           "missing %r from %r" % (missing, got) if missing else "")


def check_firstboot(img, exp):
    st = parse_env(img.read("/var/lib/homelab-image/firstboot.status"))
    expect_eq("firstboot.status state", "done", st.get("state"))
    if st.get("state") != "done":
        print("      status file: %r" % st)
        print("      unit journal:\n" + (img.read("/var/lib/e2e/report/firstboot-journal.txt") or "")[-3000:])
    if exp.get("hostname"):
        expect_eq("firstboot.status node", exp["hostname"], st.get("node"))
    if exp.get("firstboot_unit"):
        expect_eq("homelab-firstboot.service", "active",
                  (img.read("/var/lib/e2e/report/firstboot-active.txt") or "").strip())
        record(img.exists("/var/lib/homelab-image/firstboot.done"), "firstboot.done exists")
    sync = parse_env(img.read("/var/lib/e2e/report/timedatectl.txt"))
    expect_eq("timedatectl NTPSynchronized (clock stand-in)", "yes", sync.get("NTPSynchronized"))


def check_snaps(img, exp):
    log = (img.read("/var/lib/e2e/snap.log") or "").splitlines()
    for name, channel in exp["snaps"].items():
        got = (img.read("/var/lib/e2e/snaps/" + name) or "").strip()
        expect_eq("snap %s installed at channel" % name, channel, got or None)
        calls = [l for l in log if re.match(r"snap (install|refresh) %s( |$)" % re.escape(name), l)]
        record(any("--channel=" + channel in l for l in calls), "snap install/refresh %s --channel=%s" % (name, channel),
               "calls: %r" % calls)
    if exp.get("snaps_held"):
        held = [l for l in log if l.startswith("snap refresh --hold")]
        record(held and all(n in held[-1].split() for n in exp["snaps"]), "snap refresh --hold all snaps",
               "calls: %r" % held)


def check_snap_commands(img, exp):
    # The stand-ins exist only where snapd puts snap commands, so a first
    # boot that ran them looked in /snap/bin.
    for name in exp["snap_commands"]:
        record(img.exists("/snap/bin/" + name), "/snap/bin/%s made by snap install" % name)
        elsewhere = [d for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin")
                     if img.exists("%s/%s" % (d, name))]
        record(not elsewhere, "%s only in /snap/bin, as snapd installs it" % name,
               "also in %r" % elsewhere if elsewhere else "")


def check_preseed(img, exp):
    with open(exp["preseed"]) as f:
        want = f.read()
    got = img.read("/var/lib/e2e/microcloud-preseed.yaml")
    if got is None:
        mc = img.read("/var/lib/e2e/microcloud.log")
        record(False, "microcloud preseed ran", "expected its stdin recorded, got none; microcloud calls: %r" % mc)
        return
    mc = (img.read("/var/lib/e2e/microcloud.log") or "").splitlines()
    expect_eq("microcloud preseed runs", 1, mc.count("microcloud preseed"))
    record(got == want, "microcloud preseed read our preseed (%d bytes)" % len(want),
           "" if got == want else "expected %r, got %r" % (want[:300], got[:300]))


def check_absent(img, exp):
    for p in exp["absent"]:
        record(not img.exists(p), "%s absent" % p)


def check_locked(img, exp):
    shadow = img.read("/etc/shadow") or ""
    for name in exp["locked_accounts"]:
        e = next((l.split(":") for l in shadow.splitlines() if l.split(":")[0] == name), None)
        record(e is not None and e[1][:1] in ("!", "*"), "account %s locked" % name,
               "shadow field %r" % (e[1][:12] if e else None))


def check_raw_regions(img, exp):
    for r in exp["raw_regions"]:
        with open(r["file"], "rb") as f:
            want = f.read()
        with open(img.path, "rb") as f:
            f.seek(r["offset"])
            got = f.read(len(want))
        record(got == want, "raw area at byte %d unchanged (%s)" % (r["offset"], os.path.basename(r["file"])),
               "" if got == want else "differs from the replica's bytes")


def check_bootloader(img, exp):
    b = exp["bootloader"]
    calls = (img.read("/var/lib/e2e/rpi-eeprom-config.log") or "").splitlines()
    status = parse_env(img.read("/var/lib/homelab-image/firstboot.status"))
    if b is None:
        expect_eq("rpi-eeprom-config never called (no firmware in the profile)", [], calls)
        expect_eq("firstboot.status has no bootloader line", None, status.get("bootloader"))
        return
    with open(b["preset_file"]) as f:
        preset = f.read()
    expect_eq("%s holds the preset %s" % (b["conf_path"], os.path.basename(b["preset_file"])),
              preset, img.read(b["conf_path"]))
    _, mode = img.stat_uid_mode(b["conf_path"])
    expect_eq("%s mode" % b["conf_path"], "0o644", oct(mode) if mode is not None else None)
    expect_eq("rpi-eeprom-config calls: read the installed configuration, then --apply",
              ["rpi-eeprom-config", "rpi-eeprom-config --apply " + b["conf_path"]], calls)
    expect_eq("rpi-eeprom-config --apply read the preset", preset,
              img.read("/var/lib/e2e/eeprom-applied.conf"))
    expect_eq("firstboot.status bootloader", b["status"], status.get("bootloader"))


def check_k3s(img, exp):
    k = exp.get("k3s")
    if not k:
        return
    role = k["role"]
    unit, other = ("k3s.service", "k3s-agent.service") if role == "server" else \
        ("k3s-agent.service", "k3s.service")
    expect_eq("k3s argv", role + "\n", img.read("/var/lib/e2e/k3s/argv"))
    env = parse_env(img.read("/var/lib/e2e/k3s/env") or "")
    expect_eq("k3s ran under systemd with a notify socket",
              ("set", "set"), (env.get("NOTIFY_SOCKET"), env.get("INVOCATION_ID")))
    calls = (img.read("/var/lib/e2e/k3s/calls") or "").splitlines()
    expect_eq("k3s started once (no restarts)", [role], calls)
    want = open(k["config"]).read()
    expect_eq("config.yaml k3s read is the rendered one", want, img.read("/var/lib/e2e/k3s/config.yaml"))
    wants = "/etc/systemd/system/multi-user.target.wants/"
    record(img.exists(wants + unit), "%s enabled by first boot" % unit)
    record(not img.exists(wants + other), "%s not enabled" % other)
    record(not img.exists("/etc/systemd/system/" + other), "%s not in the image" % other)
    status = parse_env(img.read("/var/lib/homelab-image/firstboot.status") or "")
    expect_eq("firstboot.status k3s", role, status.get("k3s"))
    journal = img.read("/var/lib/e2e/report/firstboot-journal.txt") or ""
    record("%s is active" % unit in journal, "first boot saw %s active" % unit)
    running = (img.read("/var/lib/e2e/report/cmdline.txt") or "").split()
    for tok in k.get("cmdline", []):
        record(running.count(tok) == 1, "%s once on the running kernel's command line" % tok)


def check_failed_units(img, exp):
    text = img.read("/var/lib/e2e/report/failed-units.txt") or ""
    units = [l.split()[0] for l in text.splitlines() if l.strip()]
    allowed = set(exp.get("allowed_failed_units", []))
    bad = [u for u in units if u not in allowed]
    record(not bad, "no failed units", "failed: %r" % bad if bad else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--expect", required=True)
    ap.add_argument("--report")
    a = ap.parse_args()
    with open(a.expect) as f:
        exp = json.load(f)
    img = Image(a.image, exp["root_partition"], exp.get("boot_partition"))
    print("checking %s (%s)" % (a.image, exp.get("kind")))
    check_filesystems(img, exp)
    if exp.get("seed_disk"):
        check_seed_disk(exp)
    if a.report:
        shutil.rmtree(a.report, ignore_errors=True)
        img.rdump("/var/lib/e2e", a.report)
        print("note  guest report copied to %s" % a.report)
    env = check_observer(img)
    for key, fn in [("hostname", check_hostname), ("user", check_user), ("network", check_network),
                    ("cmdline_tokens", check_cmdline), ("snaps", check_snaps),
                    ("snap_commands", check_snap_commands), ("preseed", check_preseed),
                    ("absent", check_absent), ("locked_accounts", check_locked),
                    ("raw_regions", check_raw_regions), ("disk_size", check_disk_size),
                    ("grown_root", check_grown_root)]:
        if exp.get(key):
            fn(img, exp)
    if exp.get("ssh_login"):
        check_ssh_login(img, exp)
    if "cloud_init" in exp:
        check_cloud_init(img, exp, env)
    check_firstboot(img, exp)
    check_k3s(img, exp)
    if "bootloader" in exp:
        check_bootloader(img, exp)
    check_failed_units(img, exp)
    failed = RESULTS.count(False)
    print("%d passed, %d failed" % (RESULTS.count(True), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
