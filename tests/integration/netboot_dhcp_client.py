# The scripted DHCP client of tests/integration/netboot_dhcp.rs, run inside
# the client network namespace: it sends the DHCP requests the test built
# (raw bytes) from port 68 and prints every BOOTREPLY it hears, with the
# addresses it came from and was sent to, as JSON on stdout.
#
# usage: netboot_dhcp_client.py IFACE SPEC.json
# SPEC: {"batches": [{"to": "a.b.c.d", "packets": [hex, ...],
#                     "probe": {"hex": ..., "xid": N}}],
#        "requests": [{"hex": ..., "xid": N, "answer": bool}],
#        "wait": seconds, "quiet": seconds}
# Each batch's packets are sent once to "to":67, then its probe (a request
# that must be answered) until answered: the server reads a socket in
# order, so the probe's answer means the batch was read, and the server's
# socket buffer never holds more than one batch (no kernel drops however
# slow the server is). Then the requests are broadcast to port 67 every
# half second until answered. The run ends when every request marked
# "answer" has its reply and "quiet" seconds have passed (time for a reply
# that must not come), or at "wait". A probe without its answer fails the
# run.

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



def receive(timeout):
    """One BOOTREPLY as (xid, record), or None after `timeout` seconds."""
    ready, _, _ = select.select([s], [], [], timeout)
    if not ready:
        return None
    data, anc, _flags, src = s.recvmsg(4096, socket.CMSG_SPACE(12))
    dst = None
    for level, kind, value in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
            dst = socket.inet_ntoa(value[8:12])
    if len(data) < 8 or data[0] != 2:
        return None
    xid = struct.unpack("!I", data[4:8])[0]
    return xid, {"xid": xid, "src": "%s:%d" % src, "dst": dst, "hex": data.hex()}


got = {}
replies = []
start = time.monotonic()
for batch in spec.get("batches", []):
    for p in batch["packets"]:
        s.sendto(bytes.fromhex(p), (batch["to"], 67))
    probe = batch["probe"]
    next_send = 0.0
    while probe["xid"] not in got:
        now = time.monotonic()
        if now - start > spec["wait"]:
            sys.exit("no answer to probe %#x" % probe["xid"])
        if now >= next_send:
            s.sendto(bytes.fromhex(probe["hex"]), (batch["to"], 67))
            next_send = now + 0.5
        r = receive(0.05)
        if r and r[0] not in got:
            got[r[0]] = True
            replies.append(r[1])

requests = spec["requests"]
want = {r["xid"] for r in requests if r["answer"]}
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
    r = receive(0.05)
    if r and r[0] not in got:
        got[r[0]] = True
        replies.append(r[1])

json.dump(replies, sys.stdout)
