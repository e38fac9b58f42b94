#!/usr/bin/env python3
"""The 2.x reference's WebSocket client (asap-protocol 2.5.10, `WebSocketTransport`)
against an agent's `/asap/ws`: sends a task.request for skill "echo" with input
{"message": MESSAGE}, either unary (`send_and_receive`, MODE "unary") or streaming
(`send_and_receive_stream`, MODE "stream", which ends at the chunk with `final: true`),
and prints each envelope it gets as one `model_dump_json()` line, then "received N"
(the client itself checks that every answer's correlation_id is the request's id).

The client sends no `ASAP-Version` on the handshake, and cannot be made to: its
`extra_headers` (the only way to add handshake headers) is the legacy `websockets`
keyword, which `websockets.connect` >= 14 refuses with a TypeError (2.5.10 installs
websockets 17).

Usage: ref25_ws_client.py URL RECIPIENT MESSAGE MODE
"""

import asyncio
import sys

from asap.models.envelope import Envelope
from asap.models.payloads import TaskRequest
from asap.transport.ws.client import WebSocketTransport


async def main(url, recipient, message, mode):
    request = Envelope(
        asap_version="0.1",
        sender="urn:asap:agent:interop",
        recipient=recipient,
        payload_type="task.request",
        payload=TaskRequest(
            conversation_id="c1", skill_id="echo", input={"message": message}
        ).model_dump(),
    )
    ws_url = url.replace("http://", "ws://").rstrip("/") + "/asap/ws"
    transport = WebSocketTransport(receive_timeout=20)
    count = 0
    async with transport:
        await transport.connect(ws_url)
        if mode == "unary":
            answers = [await transport.send_and_receive(request)]
        else:
            answers = [e async for e in transport.send_and_receive_stream(request)]
        for envelope in answers:
            print(envelope.model_dump_json(), flush=True)
            count += 1
    print(f"received {count}", flush=True)


asyncio.run(main(*sys.argv[1:5]))
