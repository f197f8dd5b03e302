#!/usr/bin/env python3
"""Slow clients for slow_clients_test.sh.

Usage: slow_clients.py PORT CA COUNT MODE SECONDS
  MODE stall:   TLS handshake, a request line, then silence
  MODE trickle: TLS handshake, then one header byte every 0.5 s
Each client gives up after SECONDS. Prints one line: how many connections the server closed,
and after how many seconds (median and largest).
"""
import socket
import ssl
import statistics
import sys
import threading
import time

port, ca, count, mode, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
context = ssl.create_default_context(cafile=ca)
closed = []
lock = threading.Lock()


def client():
    start = time.monotonic()
    deadline = start + seconds
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=seconds)
        tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        header = b"X-Slow: " + b"a" * 4000
        sent = 0
        while time.monotonic() < deadline:
            if mode == "trickle":
                tls.settimeout(0.5)
                try:
                    tls.sendall(header[sent % len(header):sent % len(header) + 1])
                    sent += 1
                except OSError:
                    break
            else:
                tls.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if tls.recv(1) == b"":
                    break  # the server closed the connection
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                break
        else:
            return  # still open when the client gave up
    except (OSError, ssl.SSLError):
        pass  # refused, reset or handshake cut: closed by the server as well
    with lock:
        closed.append(time.monotonic() - start)


threads = [threading.Thread(target=client) for _ in range(count)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if closed:
    print("closed=%d/%d median_s=%.1f max_s=%.1f" % (len(closed), count, statistics.median(closed), max(closed)))
else:
    print("closed=0/%d median_s=- max_s=-" % count)
