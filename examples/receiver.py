#!/usr/bin/env python3
"""A webhook receiver in 40 lines of standard-library Python, for trying
Signhook out: it checks every delivery's Standard Webhooks signature with
your subscription's secret, prints the event, and answers 204.

    SIGNHOOK_SECRET=whsec_... python3 examples/receiver.py 9000

Any Standard Webhooks library does the same check; this one shows the whole
rule: base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")),
where key is the base64-decoded part of the secret after "whsec_".
"""
import base64, hashlib, hmac, http.server, json, os, sys, time

SECRET = os.environ["SIGNHOOK_SECRET"]
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))
TOLERANCE = 5 * 60


def verified(headers, body):
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, g) for g in given)


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if not verified(self.headers, body):
            print("REJECTED: bad webhook signature", flush=True)
            self.send_response(401)
        else:
            event = json.loads(body)
            print(f"verified {event['type']} {event['id']}: {json.dumps(event['data'])}", flush=True)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
print(f"listening on http://127.0.0.1:{port}/", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
