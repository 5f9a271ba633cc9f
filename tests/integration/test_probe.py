#!/usr/bin/env python3
"""`ringtls probe` tells the truth about this machine: its answer on the
tls ULP matches what setsockopt(TCP_ULP, "tls") does here, it says why when
kTLS is missing, and it lists the io_uring operations ringtls uses."""
import errno
import os
import platform
import socket

import rtls_test as rt

TCP_ULP = 31


def ulp_here():
    """0 if the kernel can attach the tls ULP (ENOTCONN on an unconnected
    socket means it could), else the errno."""
    s = socket.socket()
    try:
        s.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        return 0
    except OSError as e:
        return 0 if e.errno == errno.ENOTCONN else e.errno
    finally:
        s.close()


def test(t):
    out = rt.run_cmd([rt.RINGTLS_BIN, "probe"]).stdout
    out = out.decode() if isinstance(out, bytes) else out
    t.check("kernel:" in out and platform.release() in out, "kernel version: %r" % out[:200])
    err = ulp_here()
    if err == 0:
        t.check("tls ULP:        yes" in out, "probe says the tls ULP is there")
        t.check("TLS 1.3 AES-128-GCM" in out, "per-cipher table present")
    else:
        t.check("tls ULP:        no" in out, "probe says the tls ULP is missing")
        t.check(os.strerror(err) in out, "and why (%s)" % os.strerror(err))
        t.check("not available" in out, "says TLS stays in userspace")
    for op in ("ACCEPT", "RECV", "SEND", "SPLICE", "RECVMSG", "SENDMSG"):
        t.check(op in out, "io_uring op %s listed" % op)


if __name__ == "__main__":
    rt.main(test)
