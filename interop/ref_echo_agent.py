#!/usr/bin/env python3
"""The reference echo agent (asap-protocol 1.1.0), as `python -m asap.examples.echo_agent`
serves it (the same app: `create_echo_app`, rate limit from ASAP_RATE_LIMIT), but on a
socket it binds itself; prints "listening on http://127.0.0.1:PORT" first (see listen.py).

Usage: ref_echo_agent.py
"""

from asap.examples.echo_agent import create_echo_app

from listen import serve

serve(lambda base: create_echo_app(f"{base}/asap"))
