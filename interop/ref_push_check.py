#!/usr/bin/env python3
"""The reference WebSocket client (asap-protocol 1.1.0) receiving server pushes: sends a
`push` task with count N to URL and prints {"pushed": <result.pushed>, "received": <pushes
routed to on_message>, "types": [...]}.  Usage: ref_push_check.py URL AGENT_ID N"""

import asyncio
import contextlib
import io
import json
import sys

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from asap.models.envelope import Envelope
    from asap.transport.client import ASAPClient


async def main(url, agent_id, count):
    pushed = []
    async with ASAPClient(url, transport_mode="websocket", require_https=False, timeout=20,
                          max_retries=1, on_message=pushed.append) as client:
        request = Envelope(asap_version="0.1", sender="urn:asap:agent:reference-client", recipient=agent_id,
                           payload_type="task.request",
                           payload={"conversation_id": "c", "skill_id": "push", "input": {"count": count}})
        reply = await client.send(request)
        for _ in range(40):
            if len(pushed) >= count:
                break
            await asyncio.sleep(0.05)
    print(json.dumps({"pushed": (reply.payload.get("result") or {}).get("pushed"),
                      "received": len(pushed), "types": sorted({p.payload_type for p in pushed})}))


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
