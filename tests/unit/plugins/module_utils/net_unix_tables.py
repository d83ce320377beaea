"""``/proc/net/unix`` tables shared by the unit tests of the one parser
(_shim_scan.parse_net_unix) and of its users (_shim_scan, _shim_probe)."""

# the host's table: a shim socket (/run/containerd/s/<sha256>), a containerd
# (its gRPC address and <address>.ttrpc), a connection accepted on it, an
# older shim's abstract socket, another listener, a datagram socket that does
# not listen, a listener without a name
HOST = """Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 3067911 /run/containerd/s/%s
0000000000000000: 00000002 00000000 00010000 0001 01 2921 /tmp/hd/containerd/c.sock
0000000000000000: 00000002 00000000 00010000 0001 01 2922 /tmp/hd/containerd/c.sock.ttrpc
0000000000000000: 00000003 00000000 00000000 0001 03 2950 /tmp/hd/containerd/c.sock
0000000000000000: 00000002 00000000 00010000 0001 01 2960 @/containerd-shim/moby/abc/shim.sock
0000000000000000: 00000002 00000000 00010000 0001 01 2961 /run/other.sock
0000000000000000: 00000002 00000000 00000000 0002 01 2962 /run/systemd/notify
0000000000000000: 00000002 00000000 00010000 0001 01 2963
""" % ("ab" * 32)

# a shim's network namespace as containerd 1.6 and its shims leave it: the
# shim's listener (flags 00010000, state 01) at %(sock)s, an accepted
# connection on it, containerd's sockets
SHIM = """Num       RefCount Protocol Flags    Type St Inode Path
000000004971ba85: 00000002 00000000 00010000 0001 01 7113028 %(sock)s
00000000830c3960: 00000003 00000000 00000000 0001 03 7113037 %(sock)s
0000000012345678: 00000002 00000000 00010000 0001 01 7000001 /run/containerd/containerd.sock
0000000012345679: 00000002 00000000 00010000 0001 01 7000002 @/containerd-shim/other.sock
0000000012345680: 00000003 00000000 00000000 0001 03 7000003
"""
SHIM_LISTENER = 7113028
SHIM_CONNECTION = 7113037
