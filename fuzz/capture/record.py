#!/usr/bin/env python3
"""A recording TCP proxy for building fuzz seeds from real PostgreSQL traffic.

    record.py LISTEN_PORT UPSTREAM_PORT OUT_DIR

Forwards every connection on 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT and writes
OUT_DIR/conn-N.bin: records of one direction byte (C = client to server, S = server to
client), a big-endian u32 length and the bytes of one read, in the order they happened.
Runs until killed.
"""
import os
import selectors
import socket
import struct
import sys
import threading


def serve(client, upstream_port, path):
    server = socket.create_connection(("127.0.0.1", upstream_port))
    sel = selectors.DefaultSelector()
    sel.register(client, selectors.EVENT_READ, (b"C", server))
    sel.register(server, selectors.EVENT_READ, (b"S", client))
    with open(path, "wb") as out:
        while True:
            for key, _ in sel.select():
                direction, peer = key.data
                data = key.fileobj.recv(65536)
                if not data:
                    client.close()
                    server.close()
                    return
                out.write(direction + struct.pack(">I", len(data)) + data)
                out.flush()
                peer.sendall(data)


def main():
    listen_port, upstream_port, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", listen_port))
    lsock.listen(16)
    n = 0
    while True:
        client, _ = lsock.accept()
        n += 1
        path = os.path.join(out_dir, "conn-%03d.bin" % n)
        threading.Thread(target=serve, args=(client, upstream_port, path), daemon=True).start()


if __name__ == "__main__":
    main()
