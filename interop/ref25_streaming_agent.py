#!/usr/bin/env python3
"""The 2.x reference's streaming example agent (asap-protocol 2.5.10), as
`python -m asap.examples.streaming_agent` serves it (`create_streaming_app`: a streaming
handler for task.request, word-by-word TaskStream chunks), but on a socket it binds
itself; prints "listening on http://127.0.0.1:PORT" first (see listen.py).

Usage: ref25_streaming_agent.py
"""

from asap.examples.streaming_agent import create_streaming_app

from listen import serve

serve(lambda base: create_streaming_app(f"{base}/asap"))
