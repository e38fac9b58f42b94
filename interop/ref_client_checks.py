#!/usr/bin/env python3
"""The reference client (asap-protocol 1.1.0 ASAPClient) against a server under test.

Usage: python ref_client_checks.py --url http://127.0.0.1:PORT [--agent-id URN]

Runs each scenario with the reference's own client and error handling, prints a
PASS/FAIL line per scenario and ends with `N passed, M failed`; exits 1 on any failure.
The server must run the built-in agent (task lifecycle handlers, `echo` skill) with a
rate limit high enough for a dozen requests.
"""

import argparse
import asyncio
import contextlib
import io
import logging
import sys
import traceback
import warnings

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from asap.models.envelope import Envelope
    from asap.transport.client import ASAPClient, ASAPRemoteError

SENDER = "urn:asap:agent:reference-client"


def envelope(agent_id, payload_type, payload, **extra):
    return Envelope(asap_version="0.1", sender=SENDER, recipient=agent_id, payload_type=payload_type,
                    payload=payload, **extra)


def client(url):
    return ASAPClient(url, require_https=False, transport_mode="http", max_retries=1)


async def run(url, agent_id):
    results = []

    async def check(name, scenario):
        try:
            async with client(url) as c:
                await scenario(c)
            results.append((name, None))
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            results.append((name, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"))

    async def discover(c):
        m = await c.discover(url)
        assert m.id == agent_id, m.id
        assert any(s.id == "echo" for s in m.capabilities.skills)
        assert m.endpoints.asap.endswith("/asap")

    async def health(c):
        h = await c.health_check(url)
        assert h.status == "healthy" and h.agent_id == agent_id, h

    async def echo(c):
        req = envelope(agent_id, "task.request", {"conversation_id": "c1", "skill_id": "echo",
                                                  "input": {"msg": "h\u00e9llo \u2713 \u65e5\u672c", "n": 12345678901234567890, "f": 0.1}})
        resp = await c.send(req)
        assert resp.payload_type == "task.response", resp.payload_type
        assert resp.correlation_id == req.id
        assert resp.sender == agent_id and resp.recipient == SENDER
        assert resp.payload["status"] == "completed"
        assert resp.payload["result"] == {"echoed": req.payload["input"]}, resp.payload

    async def large_compressed(c):
        req = envelope(agent_id, "task.request", {"conversation_id": "c1", "skill_id": "echo", "input": {"text": "x" * 50_000}})
        resp = await c.send(req)
        assert resp.payload["result"]["echoed"]["text"] == "x" * 50_000

    async def trace_id_copied(c):
        req = envelope(agent_id, "task.request", {"conversation_id": "c1", "skill_id": "echo", "input": {}}, trace_id="trace-42")
        resp = await c.send(req)
        assert resp.trace_id == "trace-42", resp.trace_id

    async def unknown_payload_type(c):
        try:
            await c.send(envelope(agent_id, "nothing.here", {}))
        except ASAPRemoteError as e:
            assert e.code == -32601, e.code
            assert e.data["payload_type"] == "nothing.here", e.data
            return
        raise AssertionError("no error")

    async def invalid_payload(c):
        try:
            await c.send(envelope(agent_id, "task.request", {"conversation_id": "c1"}))
        except ASAPRemoteError as e:
            assert e.code in (-32602, -32603), e.code
            return
        raise AssertionError("no error")

    async def lifecycle(c):
        resp = await c.send(envelope(agent_id, "task.request", {"conversation_id": "c1", "skill_id": "echo", "input": {"k": 1}}))
        task_id = resp.payload["task_id"]
        snap = await c.send(envelope(agent_id, "state.query", {"task_id": task_id}))
        assert snap.payload_type == "state.snapshot", snap.payload_type
        assert snap.payload["task_id"] == task_id and snap.payload["version"] == 2, snap.payload
        try:
            await c.send(envelope(agent_id, "task.cancel", {"task_id": task_id}))
        except ASAPRemoteError as e:
            assert e.code in (-32602, -32603), e.code
        else:
            raise AssertionError("cancelling a completed task succeeded")
        ack = await c.send(envelope(agent_id, "message.send", {"task_id": task_id, "message_id": "m1", "sender": SENDER,
                                                               "role": "user", "parts": []}))
        assert ack.payload_type == "MessageAck" and ack.payload["status"] == "processed", ack.payload

    async def state_restore(c):
        resp = await c.send(envelope(agent_id, "task.request", {"conversation_id": "c1", "skill_id": "echo", "input": {}}))
        task_id = resp.payload["task_id"]
        first = await c.send(envelope(agent_id, "state.query", {"task_id": task_id, "version": 1}))
        ack = await c.send(envelope(agent_id, "state.restore", {"task_id": task_id, "snapshot_id": first.payload["id"]}))
        assert ack.payload_type == "state_restore.ack" and ack.payload["ok"] is True, ack.payload

    async def unknown_task(c):
        try:
            await c.send(envelope(agent_id, "state.query", {"task_id": "task_missing"}))
        except ASAPRemoteError as e:
            assert e.code in (-32602, -32603), e.code
            return
        raise AssertionError("no error")

    for name, scenario in [
        ("discover", discover), ("health_check", health), ("send_echo", echo), ("send_large_compressed", large_compressed),
        ("trace_id_copied", trace_id_copied), ("unknown_payload_type", unknown_payload_type),
        ("invalid_payload", invalid_payload), ("task_lifecycle", lifecycle), ("state_restore", state_restore),
        ("unknown_task", unknown_task),
    ]:
        await check(name, scenario)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--agent-id", default="urn:asap:agent:asap-rs")
    args = parser.parse_args()
    results = asyncio.run(run(args.url.rstrip("/"), args.agent_id))
    for name, error in results:
        print(f"{'PASS' if error is None else 'FAIL'} {name}" + ("" if error is None else f"\n    {error}"))
    failed = sum(1 for _, e in results if e is not None)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
