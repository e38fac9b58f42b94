#!/usr/bin/env python3
"""The reference implementation's WebSocket side (asap-protocol 1.1.0) against a server under test.

  python ws_interop.py --url http://127.0.0.1:PORT --agent-id URN

Runs each check with the reference's own client (ASAPClient, transport_mode="websocket") and,
for the frame-level checks, the `websockets` library it depends on plus the reference's models;
prints one JSON object per check ({"check", "ok", "detail"}) and exits 1 if any failed.
"""

import argparse
import asyncio
import contextlib
import io
import json
import logging
import sys
import warnings

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    import websockets
    from asap.models.envelope import Envelope
    from asap.models.payloads import MessageAck
    from asap.transport.client import ASAPClient

SENDER = "urn:asap:agent:reference-ws-client"


def envelope(agent_id, n, **extra):
    return Envelope(asap_version="0.1", sender=SENDER, recipient=agent_id, payload_type="task.request",
                    payload={"conversation_id": "ws-conv", "skill_id": "echo", "input": {"n": n}}, **extra)


def client(url):
    return ASAPClient(url, transport_mode="websocket", require_https=False, timeout=20, max_retries=1)


async def request_response(url, agent_id):
    async with client(url) as c:
        reply = await c.send(envelope(agent_id, 1))
    assert reply.payload_type in ("task.response", "TaskResponse"), reply.payload_type
    assert reply.payload["result"] == {"echoed": {"n": 1}}, reply.payload
    return f"correlation_id={reply.correlation_id}"


async def concurrent_requests(url, agent_id):
    async with client(url) as c:
        sent = [envelope(agent_id, n) for n in range(8)]
        replies = await asyncio.gather(*(c.send(e) for e in sent))
    for e, r in zip(sent, replies):
        assert r.correlation_id == e.id, (r.correlation_id, e.id)
        assert r.payload["result"] == {"echoed": e.payload["input"]}, r.payload
    return f"{len(replies)} replies matched"


async def acks(url, agent_id):
    """Frame level: the ack is a notification that the reference's models accept, sent before the reply."""
    ws_url = url.replace("http://", "ws://").rstrip("/") + "/asap/ws"
    env = envelope(agent_id, 2, requires_ack=True)
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "asap.send", "id": "ack-1",
                                  "params": {"envelope": env.model_dump(mode="json")}}))
        frames = []
        while not any(f.get("id") == "ack-1" for f in frames):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    first = frames[0]
    assert first.get("method") == "asap.ack" and "id" not in first, first
    ack_env = Envelope.model_validate(first["params"]["envelope"])
    ack = MessageAck.model_validate(ack_env.payload)
    assert ack_env.payload_type == "MessageAck", ack_env.payload_type
    assert ack.original_envelope_id == env.id and ack.status == "received", ack
    assert ack_env.sender == agent_id and ack_env.recipient == SENDER, ack_env
    reply = Envelope.model_validate(frames[-1]["result"]["envelope"])
    assert reply.correlation_id == env.id
    return f"{len(frames)} frames, ack first"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--agent-id", required=True)
    args = parser.parse_args()
    failed = 0
    for check in (request_response, concurrent_requests, acks):
        try:
            detail = await asyncio.wait_for(check(args.url, args.agent_id), 60)
            print(json.dumps({"check": check.__name__, "ok": True, "detail": detail}))
        except BaseException as e:  # report and go on
            failed += 1
            print(json.dumps({"check": check.__name__, "ok": False, "detail": f"{type(e).__name__}: {e}"}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
