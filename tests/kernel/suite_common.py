"""What both kernel suites (ktls_suite.py, keyupdate_suite.py) share: the
binary under test, the kernel's TLS counters file, the skip code, and the
failure types and request builder their checks use."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RINGTLS_BIN = os.environ.get("RINGTLS_BIN") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "ringtls"))
STAT_PATH = "/proc/net/tls_stat"
SKIP_RC = 77             # CTest's SKIP_RETURN_CODE
HELLO = b"Hello, World!"


class Fail(Exception):
    pass


class SkipCheck(Exception):
    pass


def req(path="/hello", close=False):
    return ("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" %
            (path, "Connection: close\r\n" if close else "")).encode()
