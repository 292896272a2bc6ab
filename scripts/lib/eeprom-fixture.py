#!/usr/bin/env python3
"""Raspberry Pi bootloader EEPROM images for the test fixtures, written
independently of homelab-image's Rust code (src/firmware/eeprom.rs), and a
reader the tests use as an oracle.

  eeprom-fixture.py build SOC DATE OUT [--after-bootconf] [--stamp]
  eeprom-fixture.py bootconf IMAGE      print the bootconf.txt section's data
  eeprom-fixture.py sections IMAGE      one line per section: offset magic length name

The layout is the one of Raspberry Pi's released images (rpi-eeprom's
firmware-2711/ and firmware-2712/ files, walked section by section; format
in shared/reference/targets.md §4.5): big-endian (magic, length) headers,
8-byte aligned; a bootcode section at 0 (magic 0x55aaf00f); 0x55aaf44f
sections (compressed files); file sections (0x55aaf11f: 12-byte NUL-padded
name, 4 zero bytes, data; length = data + 16) each starting a 4 KiB
erase sector; padding sections (0x55aafeef) between; 0xff everywhere else,
including the last 4 KiB, which the bootloader reserves.

SOC 2711: 512 KiB, the Pi 4 layout, with bootconf.txt the last section.
  --after-bootconf puts padding and another file (cacert.der) after it.
  --stamp writes an update timestamp into the last 8 bytes, as
  `rpi-eeprom-config --timestamp` does for an image without an updatetime
  file (bytes an edit of bootconf.txt must keep).
SOC 2712: 2 MiB, the A/B layout of Pi 5 releases since 2025: a 64 KiB
  read-only area, partition A (988 KiB) opening with a `bootsys` file and
  holding bootconf.txt, then an empty partition B (one padding section).

Contents are deterministic bytes (SHA-256 in counter mode, seeded by the
SOC, DATE and section), so two runs give identical files and every
release differs.
"""

import hashlib
import struct
import sys

MAGIC = 0x55AAF00F
FILE_MAGIC = 0x55AAF11F
PAD_MAGIC = 0x55AAFEEF
COMPRESSED_MAGIC = 0x55AAF44F
MASK = 0xFFFFF00F
SECTOR = 4096
READ_ONLY = 64 * 1024
PARTITION = 988 * 1024

DEFAULT_CONF = {
    2711: b"[all]\nBOOT_UART=0\nWAKE_ON_GPIO=1\nPOWER_OFF_ON_HALT=0\n",
    2712: b"[all]\nBOOT_UART=1\nBOOT_ORDER=0xf461\nNET_INSTALL_AT_POWER_ON=1\n",
}


def stream(tag, size):
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(f"{tag}/{n}".encode()).digest()
        n += 1
    return bytes(out[:size])


class Writer:
    def __init__(self, size):
        self.b = bytearray(b"\xff" * size)
        self.at = 0

    def section(self, magic, data, name=None):
        at = self.at
        if name is not None:
            raw = name.encode()
            assert len(raw) <= 12
            body = raw.ljust(12, b"\0") + b"\0\0\0\0" + data
        else:
            body = data
        struct.pack_into(">II", self.b, at, magic, len(body))
        self.b[at + 8 : at + 8 + len(body)] = body
        self.at = (at + 8 + len(body) + 7) & ~7
        return at

    def pad_to(self, target):
        """A padding section from here up to `target` (8-aligned)."""
        gap = target - self.at
        assert gap >= 0 and gap % 8 == 0, (self.at, target)
        if gap >= 8:
            struct.pack_into(">II", self.b, self.at, PAD_MAGIC, gap - 8)
            self.b[self.at + 8 : target] = b"\xff" * (gap - 8)
        self.at = target

    def pad_to_sector(self):
        self.pad_to((self.at + SECTOR - 1) // SECTOR * SECTOR)

    def file(self, name, data):
        self.pad_to_sector()
        return self.section(FILE_MAGIC, data, name)


def build_2711(date, after_bootconf, stamp):
    tag = f"2711 {date}"
    w = Writer(512 * 1024)
    w.section(MAGIC, stream(tag + " bootcode", 40000))
    w.section(PAD_MAGIC, b"\xff" * 524)
    for i, size in enumerate([61000, 12706, 9963, 7028]):
        w.section(COMPRESSED_MAGIC, stream(f"{tag} file{i}", size))
    w.file("updatetime", b"\0" * 8)
    w.file("pubkey.bin", stream(tag + " pubkey", 512))
    w.file("bootconf.sig", b"\xff" * 1024)
    w.file("bootconf.txt", DEFAULT_CONF[2711])
    if after_bootconf:
        w.file("cacert.der", stream(tag + " cacert", 2048))
    if stamp:
        ts = 1700000000
        struct.pack_into("<I", w.b, len(w.b) - 4, ts)
        struct.pack_into("<I", w.b, len(w.b) - 8, ~ts & 0xFFFFFFFF)
    return w.b


def build_2712(date):
    tag = f"2712 {date}"
    w = Writer(2 * 1024 * 1024)
    w.section(MAGIC, stream(tag + " bootcode", 25984))
    w.section(PAD_MAGIC, b"\xff" * 524)
    w.file("updatetime", b"\0" * 8)
    w.pad_to(READ_ONLY)
    w.section(FILE_MAGIC, stream(tag + " bootsys", 60000), "bootsys")
    w.section(PAD_MAGIC, b"\xff" * 524)
    for i, size in enumerate([90000, 25488, 13494]):
        w.section(COMPRESSED_MAGIC, stream(f"{tag} file{i}", size))
    w.file("updatetime", b"\0" * 8)
    w.file("pubkey.bin", stream(tag + " pubkey", 512))
    w.file("cacert.der", b"\xff" * 2048)
    w.file("bootconf.sig", b"\xff" * 1024)
    w.file("bootconf.txt", DEFAULT_CONF[2712])
    w.pad_to(READ_ONLY + PARTITION)
    # Partition B, empty: one padding section up to the last 8 KiB.
    w.pad_to(len(w.b) - 2 * SECTOR)
    return w.b


def walk(b):
    """(offset, magic, length, name) of every section, checking each."""
    out = []
    at = 0
    limit = len(b) - SECTOR
    while at + 8 <= limit:
        magic, length = struct.unpack_from(">II", b, at)
        if magic in (0, 0xFFFFFFFF):
            break
        if magic & MASK != 0x55AAF00F:
            raise SystemExit(f"offset {at:#x}: bad magic {magic:#x}")
        if at + 8 + length > limit:
            raise SystemExit(f"offset {at:#x}: section runs past {limit:#x}")
        name = ""
        if magic == FILE_MAGIC:
            name = b[at + 8 : at + 20].rstrip(b"\0").decode("ascii")
        out.append((at, magic, length, name))
        at = (at + 8 + length + 7) & ~7
    return out


def main(argv):
    if len(argv) >= 4 and argv[0] == "build":
        soc, date, out = int(argv[1]), argv[2], argv[3]
        flags = set(argv[4:])
        if soc == 2711:
            data = build_2711(date, "--after-bootconf" in flags, "--stamp" in flags)
        elif soc == 2712:
            data = build_2712(date)
        else:
            raise SystemExit(f"unknown SOC {soc}")
        walk(data)  # the writer's own output must walk
        with open(out, "wb") as f:
            f.write(data)
        return
    if len(argv) == 2 and argv[0] in ("bootconf", "sections"):
        b = open(argv[1], "rb").read()
        sections = walk(b)
        if argv[0] == "sections":
            for at, magic, length, name in sections:
                print(f"{at} {magic:#010x} {length} {name}")
            return
        found = [s for s in sections if s[1] == FILE_MAGIC and s[3] == "bootconf.txt"]
        if len(found) != 1:
            raise SystemExit(f"{len(found)} bootconf.txt sections")
        at, _, length, _ = found[0]
        sys.stdout.buffer.write(b[at + 24 : at + 8 + length])
        return
    raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
