"""Serves a TUF repository folder over HTTP on 127.0.0.1 for tufkey's client tests.

usage: serve.py DIR REQUEST_LOG

Binds a port the OS chooses, prints it on stdout (one line, flushed) and logs every request
to REQUEST_LOG as one JSON object a line: {"method", "path", "status"}, written and flushed
before the response body is sent, so a client that got its answer finds its request logged.
Runs until killed.
"""

import functools
import http.server
import json
import sys
import threading

directory, log_path = sys.argv[1], sys.argv[2]
log = open(log_path, "a", buffering=1, encoding="utf-8")
log_lock = threading.Lock()


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        entry = {"method": self.command, "path": self.path, "status": int(code)}
        with log_lock:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    def log_message(self, *args):
        pass  # no stderr chatter; log_request above is the record


server = http.server.ThreadingHTTPServer(
    ("127.0.0.1", 0), functools.partial(Handler, directory=directory)
)
print(server.server_address[1], flush=True)
server.serve_forever()
