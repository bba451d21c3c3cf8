#!/usr/bin/env python3
"""The link benchmark's second upstream: a server that is not ours.

Python's http.server (another HTTP implementation than the tests' Node one: its own
socket buffers, its own write sizes, a thread per connection) serving a folder with byte
ranges, as a CDN does, at a per-connection rate and through one uplink shared by every
connection, each a token bucket. Prints its port, then serves until killed.

usage: throttled_http.py ROOT PER_CONNECTION_BYTES_PER_S UPLINK_BYTES_PER_S  (0: no limit)
"""
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCK = 64 << 10


class Bucket:
    """Tokens at `rate` bytes a second; a taker that overdraws sleeps off its own debt."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = 0.0
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n):
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            # At most a twentieth of a second of burst, as a shaper's queue holds.
            self.tokens = min(self.rate / 20, self.tokens + (now - self.at) * self.rate) - n
            self.at = now
            debt = -self.tokens / self.rate if self.tokens < 0 else 0
        if debt:
            time.sleep(debt)


def serve(root, per_connection, uplink_rate):
    uplink = Bucket(uplink_rate)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def setup(self):
            super().setup()
            self.bucket = Bucket(per_connection)

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.answer(body=False)

        def do_GET(self):
            self.answer(body=True)

        def answer(self, body):
            rel = os.path.normpath(self.path.split('?')[0]).lstrip('/')
            path = os.path.join(root, rel)
            if rel.startswith('..') or not os.path.isfile(path):
                self.send_response(404)
                self.send_header('content-length', '0')
                self.end_headers()
                return
            size = os.path.getsize(path)
            start, end = 0, size
            status = 200
            m = re.fullmatch(r'bytes=(\d+)-(\d*)', self.headers.get('range') or '')
            if m:
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
                if start >= size or start >= end:
                    self.send_response(416)
                    self.send_header('content-range', f'bytes */{size}')
                    self.send_header('content-length', '0')
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header('accept-ranges', 'bytes')
            self.send_header('content-length', str(end - start))
            if status == 206:
                self.send_header('content-range', f'bytes {start}-{end - 1}/{size}')
            self.end_headers()
            if not body:
                return
            with open(path, 'rb') as f:
                f.seek(start)
                left = end - start
                while left > 0:
                    chunk = f.read(min(BLOCK, left))
                    self.bucket.take(len(chunk))
                    uplink.take(len(chunk))
                    self.wfile.write(chunk)
                    left -= len(chunk)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # Every connection of a build at once, none waiting on a SYN retry.
        request_queue_size = 128

        def handle_error(self, request, client_address):
            # A client that lets a range go (a split it no longer needs) closes mid-body: not an error here.
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)

    server = Server(('127.0.0.1', 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == '__main__':
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
