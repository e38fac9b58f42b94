#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from the project's own test data.

    fuzz/seeds.py OUT_DIR     # one directory per target under OUT_DIR

Sources: every raw-string literal in crates/asap-protocol/{src,tests} that is a JSON
object or array (the wire examples the unit and integration tests assert on), the
string literals that look like URNs, URLs, timestamps or versions, and the JWK sets in
crates/asap-test-support/fixtures. Each target gets them in its own input format.
Standard library only; nothing is written into the source tree.
"""

import gzip
import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATE = ROOT / "crates" / "asap-protocol"
RAW_STRING = re.compile(r'r(#+)"(.*?)"\1', re.S)
PLAIN_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
SCALAR = re.compile(r"^(urn:|https?://|wss?://|\d)")
PAYLOAD_TYPES = [
    "task.request", "task.response", "task.update", "task.cancel", "message.send",
    "state.query", "state.restore", "artifact.notify", "mcp.tool_call",
    "mcp.tool_result", "mcp.resource_fetch", "mcp.resource_data", "MessageAck",
]


def sources():
    for folder in ("src", "tests"):
        yield from sorted((CRATE / folder).rglob("*.rs"))


def json_literals():
    """The JSON objects and arrays written as raw strings in the crate's Rust code."""
    found = {}
    for path in sources():
        for match in RAW_STRING.finditer(path.read_text()):
            try:
                value = json.loads(match.group(2))
            except ValueError:
                continue
            if isinstance(value, (dict, list)):
                found[match.group(2)] = value
    return found


def scalar_literals():
    """String literals that look like URNs, URLs, timestamps or versions."""
    found = set()
    for path in sources():
        for match in PLAIN_STRING.finditer(path.read_text()):
            text = match.group(1)
            if SCALAR.match(text) and len(text) < 300:
                found.add(text.encode().decode("unicode_escape", errors="ignore"))
    return sorted(found)


def envelope(payload_type, payload, requires_ack=False):
    return {
        "asap_version": "0.1",
        "sender": "urn:asap:agent:client",
        "recipient": "urn:asap:agent:fuzz",
        "payload_type": payload_type,
        "payload": payload,
        "requires_ack": requires_ack,
    }


def request(env, request_id="req-1"):
    return {"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": env}, "id": request_id}


def dump(value):
    return json.dumps(value, ensure_ascii=False).encode()


def main(out):
    literals = json_literals()
    objects = [v for v in literals.values() if isinstance(v, dict)]
    texts = [t.encode() for t in literals]
    echo = {"conversation_id": "conv_1", "skill_id": "echo", "input": {"message": "hi"}}
    envelopes = [envelope("task.request", echo), envelope("task.request", echo, True)]
    envelopes += [envelope(t, o) for t in PAYLOAD_TYPES for o in objects[:1]]
    envelopes += [envelope("task.request", o, i % 2 == 0) for i, o in enumerate(objects)]
    wire = [dump(e) for e in envelopes] + [dump(request(e)) for e in envelopes]
    scalars = [s.encode() for s in scalar_literals()]
    urls = [s for s in scalars if re.match(rb"^(https?|wss?)://", s)]
    jwk_sets = sorted((ROOT / "crates" / "asap-test-support" / "fixtures").glob("jwks*.json"))
    kids = [k.get("kid") for p in jwk_sets for k in json.loads(p.read_text())["keys"]]
    jwt_headers = [{"alg": "RS256", "kid": k} for k in kids if k] + [{"alg": "ES256"}]
    claims = [o for o in objects if "sub" in o] + [
        {"sub": "client", "scope": "asap:execute", "exp": 4102444800},
        {"sub": "client", "scope": ["asap:read"], "iss": "https://idp.example"},
    ]
    corpora = {
        "json_encoders": texts,
        "models": texts,
        "envelope": texts + wire,
        "registry_manifest": texts,
        "http_body": texts + wire,
        "websocket_frame": texts + wire + [b'{"type": "pong"}'],
        "scalars": scalars,
        "url_policy": [b"\x00\n" + u for u in urls] + [b"\x01127.0.0.1/32\n" + u for u in urls],
        "decompress": (
            [b"\x00" + gzip.compress(t) for t in texts]
            + [bytes([m]) + t for m in (2, 3) for t in texts]
            + [b"\x04" + h for h in (b"gzip", b" BR ", b"identity", b"", b"deflate")]
        ),
        "jwks": [dump(h) + b"\n" + p.read_bytes() for h in jwt_headers for p in jwk_sets],
        "jwt": [b"\x01" + dump({"alg": "HS256", "typ": "JWT"}) + b"\n" + dump(c) for c in claims]
        + [b"\x00" + dump(h) for h in jwt_headers],
    }
    for target, inputs in corpora.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"seeds: {target}: {len(set(inputs))}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(pathlib.Path(sys.argv[1]))
