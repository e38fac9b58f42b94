#!/usr/bin/env python3
"""The 2.x reference client's `ASAPClient.stream` (asap-protocol 2.5.10) against an agent:
sends a task.request for skill "echo" with input {"message": MESSAGE} to
`URL/asap/stream` and prints each streamed envelope as it arrives, one
`model_dump_json()` line each, then "streamed N" (the client itself checks that every
chunk's correlation_id is the request's id, and fails otherwise).

Usage: ref25_stream_client.py URL RECIPIENT MESSAGE
"""

import asyncio
import sys

from asap.models.envelope import Envelope
from asap.models.payloads import TaskRequest
from asap.transport.client import ASAPClient


async def main(url, recipient, message):
    request = Envelope(
        asap_version="0.1",
        sender="urn:asap:agent:interop",
        recipient=recipient,
        payload_type="task.request",
        payload=TaskRequest(
            conversation_id="c1", skill_id="echo", input={"message": message}
        ).model_dump(),
    )
    count = 0
    async with ASAPClient(url, require_https=False) as client:
        async for envelope in client.stream(request):
            print(envelope.model_dump_json(), flush=True)
            count += 1
    print(f"streamed {count}", flush=True)


asyncio.run(main(*sys.argv[1:4]))
