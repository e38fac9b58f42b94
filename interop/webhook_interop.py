#!/usr/bin/env python3
"""Webhook signatures with the reference implementation (asap-protocol 1.1.0).

Reads JSON lines {"payload": <json>, "secret": "<text>", "body": "<our body>", "signature": "<our header>"}
from standard input; for each prints {"body": <the reference's body bytes as text>,
"signature": <the reference's compute_signature>, "accepts_ours": <verify_signature(our body, secret, our header)>}.
The reference's body is what WebhookDelivery sends: json.dumps(payload, separators=(",", ":"), sort_keys=True).
"""

import contextlib
import io
import json
import sys

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from asap.transport.webhook import compute_signature, verify_signature

for line in sys.stdin:
    if not line.strip():
        continue
    case = json.loads(line)
    secret = case["secret"].encode()
    body = json.dumps(case["payload"], separators=(",", ":"), sort_keys=True).encode()
    print(json.dumps({
        "body": body.decode(),
        "signature": compute_signature(body, secret),
        "accepts_ours": verify_signature(case["body"].encode(), secret, case["signature"]),
    }))
