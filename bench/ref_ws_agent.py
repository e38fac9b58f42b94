#!/usr/bin/env python3
"""The reference echo agent for the WebSocket benchmark: asap-protocol 1.1.0's own echo app,
with its per-connection WebSocket message limit (10/s) and HTTP rate limit raised so the
benchmark measures throughput, not the limiter. Usage: ref_ws_agent.py PORT"""

import sys

import uvicorn
from asap.examples.echo_agent import build_manifest, create_echo_handler
from asap.transport.handlers import HandlerRegistry
from asap.transport.server import create_app

port = int(sys.argv[1])
registry = HandlerRegistry()
registry.register("task.request", create_echo_handler())
app = create_app(build_manifest(f"http://127.0.0.1:{port}/asap"), registry,
                 rate_limit="1000000/second", websocket_message_rate_limit=None)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
