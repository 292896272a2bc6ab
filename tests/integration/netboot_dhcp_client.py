# The scripted DHCP client of tests/integration/netboot_dhcp.rs, run inside
# the client network namespace: it sends the DHCP requests the test built
# (raw bytes) from port 68 and prints every BOOTREPLY it hears, with the
# addresses it came from and was sent to, as JSON on stdout.
#
# usage: netboot_dhcp_client.py IFACE SPEC.json
# SPEC: {"burst": [{"hex": ..., "to": "a.b.c.d"}],   sent once, paced
#        "requests": [{"hex": ..., "xid": N, "answer": bool}],
#        "wait": seconds, "quiet": seconds}
# Requests are broadcast to port 67 every half second until answered. The
# run ends when every request marked "answer" has its reply and "quiet"
# seconds have passed (time for a reply that must not come), or at "wait".

import json
import select
import socket
import struct
import sys
import time

# Linux's IP_PKTINFO; Python names it only from 3.12 on.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)

iface, spec_path = sys.argv[1], sys.argv[2]
with open(spec_path) as f:
    spec = json.load(f)

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
s.bind(("0.0.0.0", 68))

for p in spec.get("burst", []):
    s.sendto(bytes.fromhex(p["hex"]), (p["to"], 67))
    # Paced so the server's socket buffer never overflows: the test counts
    # every datagram.
    time.sleep(0.0005)

requests = spec["requests"]
want = {r["xid"] for r in requests if r["answer"]}
got = {}
replies = []
start = time.monotonic()
next_send = 0.0
while True:
    now = time.monotonic()
    if now - start > spec["wait"]:
        break
    if want <= set(got) and now - start >= spec["quiet"]:
        break
    if now >= next_send:
        for r in requests:
            if r["xid"] not in got:
                s.sendto(bytes.fromhex(r["hex"]), ("255.255.255.255", 67))
        next_send = now + 0.5
    ready, _, _ = select.select([s], [], [], 0.05)
    if not ready:
        continue
    data, anc, _flags, src = s.recvmsg(4096, socket.CMSG_SPACE(12))
    dst = None
    for level, kind, value in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
            dst = socket.inet_ntoa(value[8:12])
    if len(data) < 8 or data[0] != 2:
        continue
    xid = struct.unpack("!I", data[4:8])[0]
    if xid not in got:
        got[xid] = True
        replies.append(
            {"xid": xid, "src": "%s:%d" % src, "dst": dst, "hex": data.hex()}
        )

json.dump(replies, sys.stdout)
