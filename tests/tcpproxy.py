#!/usr/bin/env python3
"""A loopback TCP forwarder the tests can cut: `tcpproxy.py LISTEN_PORT TARGET_PORT [RATE]`.

Killing it makes the server behind it unreachable (connections refused, open ones reset), as a
stopped server would be, without stopping a server that other tests share. With RATE (bytes per
second), each connection's bytes from the server are paced to it, so that a test can cut the
server off in the middle of a transfer. Loopback only."""
import socket, sys, threading, time

def pump(a, b, rate=0):
    try:
        t0, sent = time.monotonic(), 0
        while True:
            d = a.recv(1 << 16)
            if not d:
                break
            b.sendall(d)
            if rate:
                sent += len(d)
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def main():
    listen, target = int(sys.argv[1]), int(sys.argv[2])
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = srv.accept()
        try:
            u = socket.create_connection(("127.0.0.1", target))
        except OSError:
            c.close()
            continue
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(c, u), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, rate), daemon=True).start()

main()
