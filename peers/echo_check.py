#!/usr/bin/env python3
"""Smoke check for an echo peer: starts it, echoes random bytes, stops it.

Starts SERVER --address tcp://127.0.0.1:0 (extra arguments follow it),
reads the port from its "listening on" line as tools/duel does, then opens
several connections at once; each writes random binary messages of random
sizes back to back (pipelined: a sender thread never waits for the echo)
while the main thread reads and compares every byte. Exits non-zero on the
first difference, a lost connection or a timeout.

    python3 peers/echo_check.py PATH/TO/SERVER [ARGS...]
"""
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

CONNECTIONS = 16
MESSAGES = 64
MAX_MESSAGE = 64 * 1024
TIMEOUT_S = 20


def start(argv):
    proc = subprocess.Popen(argv + ["--address", "tcp://127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"no listening line, got {line!r}")
    return proc, int(line.strip().rsplit(":", 1)[1])


def check_connection(port, seed, errors):
    rng = random.Random(seed)
    payload = b"".join(
        rng.randbytes(rng.randint(1, MAX_MESSAGE)) for _ in range(MESSAGES))
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    sender.start()
    got = bytearray()
    try:
        while len(got) < len(payload):
            chunk = s.recv(1 << 16)
            if not chunk:
                errors.append(f"conn {seed}: closed after {len(got)} bytes")
                return
            got += chunk
            if got != payload[:len(got)]:
                errors.append(f"conn {seed}: wrong byte near offset {len(got)}")
                return
    except OSError as e:
        errors.append(f"conn {seed}: {e}")
        return
    finally:
        sender.join(TIMEOUT_S)
        s.close()


def main():
    proc, port = start(sys.argv[1:])
    errors = []
    t0 = time.monotonic()
    try:
        threads = [threading.Thread(target=check_connection, args=(port, i, errors))
                   for i in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if proc.poll() is not None:
            errors.append(f"server exited ({proc.returncode})")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
    total = CONNECTIONS * MESSAGES
    if errors:
        print("\n".join(errors))
        print(f"{os.path.basename(sys.argv[1])}: FAILED")
        sys.exit(1)
    print(f"{os.path.basename(sys.argv[1])}: {CONNECTIONS} connections, {total} messages "
          f"echoed exactly in {time.monotonic() - t0:.2f} s")


if __name__ == "__main__":
    main()
