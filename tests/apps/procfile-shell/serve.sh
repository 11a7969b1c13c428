#!/usr/bin/env bash
# Answers HTTP on $PORT with a shell `while` loop: each turn, a one-shot python3 responder takes
# one connection, answers it with the turn's number, and exits.
n=0
while true; do
  n=$((n + 1))
  python3 - "$PORT" "$n" <<'PY' || sleep 1
import socket, sys
port, n = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(1)
c, _ = s.accept()
c.recv(65536)
body = f"hello from a shell loop, turn {n}\n".encode()
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
c.close()
PY
done
