#!/usr/bin/python3
"""scripts/e2e/inject-rendered.py IMAGE RENDER_DIR BOOT_PART ROOT_PART LOCK...

A stand-in for `homelab-image build` while it does not exist: writes what
`homelab-image render --out RENDER_DIR` produced into a copy of a replica
image, with the independent tools (mtools on the FAT, debugfs -w on the
ext4), following RENDER_DIR/MANIFEST (docs/PROFILE.md, "render output"):

  boot PATH file ...            mcopy onto the FAT (BOOT_PART; 0: none)
  boot PATH edit-cmdline [set K=V] [add T]   token edits of cmdline.txt's first line
  root PATH dir|file MODE U:G   debugfs mkdir/write + mode and owner
  root PATH symlink ... -> T    debugfs symlink
  root PATH absent              debugfs rm
  root PATH merge-accounts      lines merged into the image's file: a new
                                name is appended, an existing group gains
                                the new members; the file keeps its owner
                                and mode (Debian's shadow is root:shadow)

LOCK names accounts whose shadow password is then locked (what build does
for Armbian's root). This exercises the renderers on a real boot before
build exists; it is not build, so the e2e checks of build-only behaviour
(known_hosts, bmap, ...) do not apply.
"""
import os
import re
import subprocess
import sys
import tempfile


def die(msg):
    sys.exit("inject-rendered: " + msg)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        die("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


def part_offset(img, n):
    import json
    t = json.loads(run(["sfdisk", "--json", img]))["partitiontable"]
    return t["partitions"][n - 1]["start"] * t.get("sectorsize", 512)


class Ext4:
    def __init__(self, dev):
        self.dev = dev
        self.cmds = []

    def exists(self, path):
        r = subprocess.run(["debugfs", "-R", "stat " + path, self.dev], capture_output=True, text=True)
        return "not found" not in r.stderr

    def stat(self, path):
        out = run(["debugfs", "-R", "stat " + path, self.dev])
        mode = int(re.search(r"Mode:\s+(\d+)", out).group(1), 8)
        uid = int(re.search(r"User:\s+(\d+)", out).group(1))
        gid = int(re.search(r"Group:\s+(\d+)", out).group(1))
        return mode, uid, gid

    def read(self, path, dst):
        run(["debugfs", "-R", "dump %s %s" % (path, dst), self.dev])
        with open(dst) as f:
            return f.read()

    def attrs(self, path, ftype, mode, uid, gid):
        self.cmds += ["sif %s mode 0%o" % (path, ftype | mode), "sif %s uid %d" % (path, uid),
                      "sif %s gid %d" % (path, gid)]

    def commit(self, scratch):
        cmdfile = os.path.join(scratch, "debugfs.cmds")
        with open(cmdfile, "w") as f:
            f.write("\n".join(self.cmds) + "\n")
        r = subprocess.run(["debugfs", "-w", "-f", cmdfile, self.dev], capture_output=True, text=True)
        errors = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("debugfs ")]
        if errors:
            die("debugfs -w: %s" % "; ".join(errors))


def merge_accounts(path, current, added):
    """The image's account file with the rendered lines merged in."""
    lines = current.rstrip("\n").split("\n") if current.strip() else []
    index = {l.split(":")[0]: i for i, l in enumerate(lines)}
    group_like = os.path.basename(path) in ("group", "gshadow")
    for line in added.splitlines():
        if not line.strip():
            continue
        f = line.split(":")
        if f[0] not in index:
            index[f[0]] = len(lines)
            lines.append(line)
        elif group_like:
            old = lines[index[f[0]]].split(":")
            members = [m for m in old[3].split(",") if m]
            for m in f[3].split(","):
                if m and m not in members:
                    members.append(m)
            old[3] = ",".join(members)
            lines[index[f[0]]] = ":".join(old)
    return "\n".join(lines) + "\n"


def lock(shadow, names):
    out = []
    for l in shadow.splitlines():
        f = l.split(":")
        if f[0] in names and not f[1].startswith(("!", "*")):
            f[1] = "!" + f[1]
        out.append(":".join(f))
    return "\n".join(out) + "\n"


def edit_cmdline(line, ops):
    """src/render/cmdline.rs semantics: `set K=V` changes the first K= token
    in place or appends K=V; `add T` appends T unless already present."""
    tokens = line.split()
    for op in ops:
        verb, _, arg = op.partition(" ")
        if verb == "set":
            key = arg.split("=", 1)[0]
            at = next((i for i, t in enumerate(tokens) if t.split("=", 1)[0] == key), None)
            if at is None:
                tokens.append(arg)
            else:
                tokens[at] = arg
        elif verb == "add":
            if arg not in tokens:
                tokens.append(arg)
        else:
            die("unknown cmdline operation %r" % op)
    return " ".join(tokens)


def main():
    if len(sys.argv) < 5:
        die("usage: IMAGE RENDER_DIR BOOT_PART ROOT_PART [LOCK...]")
    img, rdir, boot_part, root_part = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    to_lock = sys.argv[5:]
    root = Ext4("%s?offset=%d" % (img, part_offset(img, root_part)))
    fat = "%s@@%d" % (img, part_offset(img, boot_part)) if boot_part else None
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    S_IFDIR, S_IFREG = 0o040000, 0o100000
    with tempfile.TemporaryDirectory() as scratch, open(os.path.join(rdir, "MANIFEST")) as manifest:
        for n, line in enumerate(manifest, 1):
            f = line.split()
            if not f:
                continue
            target, path, kind, mode, owner = f[:5]
            mode = int(mode, 8)
            uid, gid = (int(x) for x in owner.split(":"))
            src = os.path.join(rdir, target, path.lstrip("/"))
            if target == "boot":
                if fat is None:
                    die("MANIFEST:%d: boot entry but the image has no boot partition" % n)
                if kind == "file":
                    run(["mcopy", "-o", "-i", fat, src, "::" + path.lstrip("/")], env=env)
                elif kind == "edit-cmdline":
                    ops = re.findall(r"\[([^\]]*)\]", line)  # " [set k=v] [add t]"
                    cur = run(["mtype", "-i", fat, "::" + path.lstrip("/")], env=env).split("\n")
                    new = os.path.join(scratch, "cmdline")
                    with open(new, "w") as out:
                        out.write(edit_cmdline(cur[0].rstrip("\r"), ops) + "\n" + "\n".join(cur[1:]).rstrip("\n"))
                    run(["mcopy", "-o", "-i", fat, new, "::" + path.lstrip("/")], env=env)
                else:
                    die("MANIFEST:%d: unknown boot entry kind %r" % (n, kind))
                continue
            exists = root.exists(path)
            if kind == "dir":
                if not exists:
                    root.cmds.append("mkdir " + path)
                root.attrs(path, S_IFDIR, mode, uid, gid)
            elif kind == "file":
                if exists:
                    root.cmds.append("rm " + path)
                root.cmds.append("write %s %s" % (src, path))
                root.attrs(path, S_IFREG, mode, uid, gid)
            elif kind == "symlink":
                if exists:
                    root.cmds.append("rm " + path)
                root.cmds.append("symlink %s %s" % (path, line.split("->", 1)[1].strip()))
            elif kind == "absent":
                if exists:
                    root.cmds.append("rm " + path)
            elif kind == "merge-accounts":
                cur = root.read(path, os.path.join(scratch, "cur")) if exists else ""
                with open(src) as fh:
                    merged = merge_accounts(path, cur, fh.read())
                if os.path.basename(path) == "shadow" and to_lock:
                    merged = lock(merged, to_lock)
                new = os.path.join(scratch, os.path.basename(path))
                with open(new, "w") as out:
                    out.write(merged)
                fmode, fuid, fgid = root.stat(path) if exists else (S_IFREG | mode, uid, gid)
                if exists:
                    root.cmds.append("rm " + path)
                root.cmds.append("write %s %s" % (new, path))
                root.attrs(path, S_IFREG, fmode & 0o7777, fuid, fgid)
            else:
                die("MANIFEST:%d: unknown root entry kind %r" % (n, kind))
        root.commit(scratch)
    r = subprocess.run(["e2fsck", "-fn", root.dev], capture_output=True, text=True)
    if r.returncode != 0:
        die("e2fsck -fn after injecting: %s" % r.stdout[-1000:])


if __name__ == "__main__":
    main()
