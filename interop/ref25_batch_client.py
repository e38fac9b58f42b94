#!/usr/bin/env python3
"""The ASAP 2.x reference client (asap-protocol 2.5.10) sends one JSON-RPC batch of three
echo `task.request`s with `ASAPClient.batch` to the agent at BASE_URL and prints, as one
JSON line, what came back for each request in order: its envelope id, the answer's
`correlation_id`, `payload_type` and `payload`. `batch` itself checks that each answer
binds to its request (by JSON-RPC id and `correlation_id`) and raises on any member error.

Usage: ref25_batch_client.py BASE_URL RECIPIENT_URN
"""

import asyncio
import json
import sys

from asap.models.envelope import Envelope
from asap.transport.client import ASAPClient


async def main(base_url: str, recipient: str) -> None:
    requests = [
        Envelope(
            asap_version="0.1",
            sender="urn:asap:agent:ref25-client",
            recipient=recipient,
            payload_type="task.request",
            payload={"conversation_id": "c1", "skill_id": "echo", "input": {"n": n}},
        )
        for n in range(3)
    ]
    async with ASAPClient(base_url, require_https=False, transport_mode="http") as client:
        answers = await client.batch(requests)
    print(
        json.dumps(
            [
                {
                    "request_id": request.id,
                    "correlation_id": answer.correlation_id,
                    "payload_type": answer.payload_type,
                    "payload": answer.model_dump(mode="json")["payload"],
                }
                for request, answer in zip(requests, answers)
            ]
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
