#!/usr/bin/env python3
"""A recorded-protocol Keystone v3 + Swift server for the workload's storage tests.

Why not the real thing: Debian 12 ships OpenStack Swift 2.30 and Keystone 22, but a test run on a
clean machine would first have to apt-install about 270 packages (Keystone, the four Swift
servers and their Python stack), then bootstrap Keystone (database sync, fernet keys, a WSGI
server, a service catalog) and Swift (rings, storage directories with xattrs, four daemons) for
every run; installing Debian packages in the test path is against the project's rules and the set
up would dominate the suite's time. This server follows the public API documents instead, and
the storage conformance suite runs the same test functions against it as against filesystem,
PostgreSQL and S3 (a real moto_server).

A real process on loopback (stdlib only), following the public Keystone v3 identity API and the
Swift object-storage API as far as the server's Swift backend uses them:

Keystone
  POST /v3/auth/tokens   password method, user and project scoped by domain name; 201 with
                         X-Subject-Token and {"token": {"expires_at", "catalog": [...]}} holding an
                         "object-store" service (public endpoint, region RegionOne); 401 otherwise.
Swift (every request needs a valid X-Auth-Token, else 401)
  HEAD/PUT/DELETE /v1/AUTH_<project>/<container>
  GET  /v1/AUTH_<project>/<container>?format=json[&prefix][&marker][&limit]   name-ordered JSON
  PUT  /v1/AUTH_<project>/<container>/<object>   body by Content-Length or chunked; ETag header
                         checked (422 on mismatch); X-Copy-From copies; 201 with ETag = MD5
  GET/HEAD /v1/AUTH_<project>/<container>/<object>   single Range -> 206 + Content-Range
  DELETE .../<object>    204, 404 when absent

Test control (not protocol): POST /_test/revoke-all invalidates every token.

Usage: swift_keystone.py PORT USER PASSWORD PROJECT [TOKEN_TTL_SECONDS]
Prints "ready" on stdout once listening. Tokens expire after TOKEN_TTL_SECONDS (default 3600).
"""

import datetime
import hashlib
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

PORT, USER, PASSWORD, PROJECT = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
TTL = float(sys.argv[5]) if len(sys.argv) > 5 else 3600.0
DOMAIN = "Default"
LOCK = threading.Lock()
TOKENS = {}  # token -> expiry (monotonic)
CONTAINERS = {}  # name -> {object name: (bytes, last_modified)}
ACCOUNT = "AUTH_" + PROJECT


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=None, head=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # Keystone ---------------------------------------------------------------------------------

    def auth(self):
        try:
            req = json.loads(self.body())["auth"]
            user = req["identity"]["password"]["user"]
            project = req["scope"]["project"]
            ok = (
                req["identity"]["methods"] == ["password"]
                and user["name"] == USER
                and user["password"] == PASSWORD
                and user["domain"]["name"] == DOMAIN
                and project["name"] == PROJECT
                and project["domain"]["name"] == DOMAIN
            )
        except (KeyError, TypeError, ValueError):
            return self.send(400, b'{"error": {"code": 400, "title": "Bad Request"}}')
        if not ok:
            return self.send(401, b'{"error": {"code": 401, "title": "Unauthorized"}}')
        token = uuid.uuid4().hex
        with LOCK:
            TOKENS[token] = time.monotonic() + TTL
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=TTL)
        body = {
            "token": {
                "methods": ["password"],
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                "project": {"name": PROJECT, "domain": {"name": DOMAIN}},
                "catalog": [
                    {"type": "identity", "name": "keystone", "endpoints": [
                        {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                         "url": f"http://127.0.0.1:{PORT}/v3"}]},
                    {"type": "object-store", "name": "swift", "endpoints": [
                        {"interface": "internal", "region": "RegionOne", "region_id": "RegionOne",
                         "url": f"http://127.0.0.1:1/v1/{ACCOUNT}"},
                        {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                         "url": f"http://127.0.0.1:{PORT}/v1/{ACCOUNT}"}]},
                ],
            }
        }
        self.send(201, json.dumps(body).encode(),
                  {"X-Subject-Token": token, "Content-Type": "application/json"})

    # Swift ------------------------------------------------------------------------------------

    def authorized(self):
        token = self.headers.get("X-Auth-Token", "")
        with LOCK:
            expiry = TOKENS.get(token)
        if expiry is None or expiry < time.monotonic():
            self.body()
            self.send(401, b"<html><h1>Unauthorized</h1></html>")
            return False
        return True

    def route(self):
        url = urlsplit(self.path)
        parts = url.path.split("/", 4)  # ['', 'v1', account, container, object]
        if len(parts) < 4 or parts[1] != "v1" or parts[2] != ACCOUNT or not parts[3]:
            return None
        container = unquote(parts[3])
        obj = unquote(parts[4]) if len(parts) > 4 and parts[4] else None
        return container, obj, parse_qs(url.query)

    def swift(self, method):
        r = self.route()
        if r is None:
            self.body()
            return self.send(404)
        if not self.authorized():
            return
        container, obj, query = r
        with LOCK:
            objects = CONTAINERS.get(container)
        if obj is None:
            return self.container(method, container, objects, query)
        if objects is None:
            self.body()
            return self.send(404)
        if method == "PUT":
            data = self.body()
            source = self.headers.get("X-Copy-From")
            if source:
                src_container, _, src_obj = unquote(source).lstrip("/").partition("/")
                with LOCK:
                    found = CONTAINERS.get(src_container, {}).get(src_obj)
                if found is None:
                    return self.send(404)
                data = found[0]
            etag = hashlib.md5(data).hexdigest()
            if self.headers.get("ETag") and self.headers["ETag"].strip('"').lower() != etag:
                return self.send(422, b"Unprocessable Entity")
            with LOCK:
                objects[obj] = (data, datetime.datetime.now(datetime.timezone.utc))
            return self.send(201, b"", {"ETag": etag})
        with LOCK:
            found = objects.get(obj)
        if method == "DELETE":
            if found is None:
                return self.send(404)
            with LOCK:
                objects.pop(obj, None)
            return self.send(204)
        if found is None:
            return self.send(404, head=method == "HEAD")
        data = found[0]
        headers = {"ETag": hashlib.md5(data).hexdigest(), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        rng = self.headers.get("Range", "")
        if method == "GET" and rng.startswith("bytes=") and "," not in rng:
            start, _, end = rng[6:].partition("-")
            start = int(start)
            end = min(int(end) if end else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return self.send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self.send(206, data[start:end + 1], headers)
        self.send(200, data, headers, head=method == "HEAD")

    def container(self, method, name, objects, query):
        self.body()
        if method == "PUT":
            with LOCK:
                CONTAINERS.setdefault(name, {})
            return self.send(201 if objects is None else 202)
        if objects is None:
            return self.send(404, head=method == "HEAD")
        if method == "HEAD":
            return self.send(204, head=True, headers={"X-Container-Object-Count": str(len(objects))})
        if method == "DELETE":
            if objects:
                return self.send(409)
            with LOCK:
                CONTAINERS.pop(name, None)
            return self.send(204)
        prefix = query.get("prefix", [""])[0]
        marker = query.get("marker", [""])[0]
        limit = int(query.get("limit", ["10000"])[0])
        with LOCK:
            items = sorted(objects.items())
        listing = [
            {"name": k, "bytes": len(v[0]), "hash": hashlib.md5(v[0]).hexdigest(),
             "content_type": "application/octet-stream",
             "last_modified": v[1].strftime("%Y-%m-%dT%H:%M:%S.%f")}
            for k, v in items if k.startswith(prefix) and k > marker
        ][:limit]
        self.send(200, json.dumps(listing).encode(), {"Content-Type": "application/json; charset=utf-8"})

    def do_POST(self):
        if urlsplit(self.path).path.rstrip("/") == "/v3/auth/tokens":
            return self.auth()
        if self.path == "/_test/revoke-all":
            # Test control, not part of the protocol: every token becomes invalid, as after a
            # Keystone revocation or restart.
            self.body()
            with LOCK:
                TOKENS.clear()
            return self.send(204)
        self.body()
        self.send(404)

    def do_GET(self):
        self.swift("GET")

    def do_HEAD(self):
        self.swift("HEAD")

    def do_PUT(self):
        self.swift("PUT")

    def do_DELETE(self):
        self.swift("DELETE")


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
