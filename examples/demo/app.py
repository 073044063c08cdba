#!/usr/bin/python3
"""The demo's app tier: an HTTP server that, for every request, runs one real
PostgreSQL query and one real Redis command, each over a connection of its own.

One connection per request, on purpose: the demo then knows exactly how many
connections each edge of the graph must show (a pooled app would show one
long-lived connection instead, which depgraph records as an open gauge).

Usage: app.py NAME LISTEN_ADDR PORT DB_ADDR CACHE_ADDR
"""
import http.server
import json
import sys

import psycopg2  # Debian: python3-psycopg2
import redis  # Debian: python3-redis

name, listen_addr, port, db_addr, cache_addr = sys.argv[1:6]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with psycopg2.connect(host=db_addr, port=5432, user="postgres", dbname="demo",
                                  connect_timeout=5) as conn:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO visits (app, path) VALUES (%s, %s) RETURNING id", (name, self.path))
                    visit = cur.fetchone()[0]
            conn.close()  # psycopg2's "with" commits but keeps the connection open
            cache = redis.Redis(host=cache_addr, port=6379, socket_timeout=5)
            hits = cache.incr("hits:" + name)
            cache.close()
            body = json.dumps({"app": name, "visit": visit, "hits": hits}).encode() + b"\n"
            self.send_response(200)
        except Exception as e:  # a failed backend is a 502, and the demo's checks notice it
            body = ("%s: %s\n" % (name, e)).encode()
            self.send_response(502)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer((listen_addr, int(port)), Handler).serve_forever()
