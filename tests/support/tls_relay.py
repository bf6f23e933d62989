#!/usr/bin/env python3
"""A loopback mutual-TLS tunnel for a unix socket (tests only).

  tls_relay.py server --to-unix SOCK --port-file F --cert C --key K --ca CA
      listens on 127.0.0.1 (an ephemeral port, written to F), requires a
      client certificate signed by CA, and relays each connection to SOCK.
  tls_relay.py client --listen-unix SOCK --port P --cert C --key K --ca CA
      listens on SOCK and relays each connection over TLS to 127.0.0.1:P,
      checking the server certificate (name "cmkfs-key-host") against CA.

This is the TLS-tunnel form of a remote PKCS#11 token (docs/keystore.md,
"Remote HSM through PKCS#11") with Python's ssl module standing in for
stunnel or socat. It exits when its parent goes away (stdin closes).
"""
import argparse
import os
import select
import socket
import ssl
import sys
import threading

SERVER_NAME = "cmkfs-key-host"


def relay(a, b):
    """Copies bytes both ways between a and b until either side closes.

    One thread per connection touches both sockets: an SSL object must not be
    read in one thread while another writes it (OpenSSL forbids it, and with
    TLS 1.3 a read may itself write, for session tickets), which once hung a
    relay that ran one thread per direction.
    """
    peer = {a: b, b: a}
    try:
        while True:
            # Bytes already decrypted inside the SSL object do not wake select.
            ready = [s for s in peer
                     if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(list(peer), [], [])
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                peer[s].sendall(data)
    except OSError:  # ssl.SSLError included
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def serve(listener, connect):
    while True:
        conn, _ = listener.accept()

        def handle(conn=conn):
            try:
                other = connect(conn)
            except (OSError, ssl.SSLError) as e:
                print("tls_relay: " + str(e), file=sys.stderr)
                conn.close()
                return
            relay(*other)

        threading.Thread(target=handle, daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--to-unix")
    p.add_argument("--port-file")
    p.add_argument("--listen-unix")
    p.add_argument("--port", type=int)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    a = p.parse_args()

    # Exit with the parent: it holds our stdin open.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)),
                     daemon=True).start()

    if a.mode == "server":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(a.cert, a.key)
        ctx.load_verify_locations(a.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(listener.getsockname()[1]))
        os.rename(tmp, a.port_file)

        def connect(conn):
            tls = ctx.wrap_socket(conn, server_side=True)
            unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            unix.connect(a.to_unix)
            return tls, unix

        serve(listener, connect)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(a.cert, a.key)
        ctx.load_verify_locations(a.ca)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(a.listen_unix)
        listener.listen(16)

        def connect(conn):
            tcp = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            tcp.settimeout(None)
            tls = ctx.wrap_socket(tcp, server_hostname=SERVER_NAME)
            return conn, tls

        serve(listener, connect)


if __name__ == "__main__":
    main()
