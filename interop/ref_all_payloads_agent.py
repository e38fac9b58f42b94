#!/usr/bin/env python3
"""A reference-side agent (asap-protocol 1.1.0) answering every payload type, for our client's
interop tests over HTTP and WebSocket: task.request (the reference echo handler), task.cancel
(task.response cancelled), state.query (state.snapshot of version 1), state.restore
(state_restore.ack) and message.send (MessageAck processed).

Usage: ref_all_payloads_agent.py

It binds its own socket and prints "listening on http://127.0.0.1:PORT" first (see listen.py).
"""

from asap.examples.echo_agent import build_manifest
from asap.models.entities import StateSnapshot
from asap.models.envelope import Envelope
from asap.models.payloads import MessageAck, TaskResponse
from asap.transport.handlers import HandlerRegistry, create_echo_handler
from asap.transport.server import create_app

from listen import serve


def reply(request, manifest, payload_type, payload):
    return Envelope(asap_version=request.asap_version, sender=manifest.id, recipient=request.sender,
                    payload_type=payload_type, payload=payload, correlation_id=request.id,
                    trace_id=request.trace_id)


def cancel(envelope, manifest):
    response = TaskResponse(task_id=envelope.payload["task_id"], status="cancelled")
    return reply(envelope, manifest, "task.response", response.model_dump())


def query(envelope, manifest):
    snapshot = StateSnapshot(id="snap_ref_1", task_id=envelope.payload["task_id"], version=1,
                             data={"from": "reference"}, created_at="2026-11-30T00:00:00Z")
    return reply(envelope, manifest, "state.snapshot", snapshot.model_dump(mode="json"))


def restore(envelope, manifest):
    ack = {"ok": True, "task_id": envelope.payload["task_id"], "snapshot_id": envelope.payload["snapshot_id"],
           "version": 1, "data": {"from": "reference"}}
    return reply(envelope, manifest, "state_restore.ack", ack)


def message(envelope, manifest):
    ack = MessageAck(original_envelope_id=envelope.id, status="processed")
    return reply(envelope, manifest, "MessageAck", ack.model_dump())


registry = HandlerRegistry()
registry.register("task.request", create_echo_handler())
registry.register("task.cancel", cancel)
registry.register("state.query", query)
registry.register("state.restore", restore)
registry.register("message.send", message)
serve(lambda base: create_app(build_manifest(f"{base}/asap"), registry,
                              rate_limit="100000/second", websocket_message_rate_limit=None))
