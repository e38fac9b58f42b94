#!/usr/bin/env python3
"""OAuth2 with the reference implementation (asap-protocol 1.1.0), for the cross-implementation tests.

  token --token-url URL --client-id ID --client-secret S [--scope S]
      The reference's OAuth2ClientCredentials obtains a token; prints {"access_token", "token_type", "expires_at"}.
  call --url URL --agent-id URN [--token T]
      The reference ASAPClient sends an echo task.request, with `Authorization: Bearer T` when given;
      prints {"outcome": "ok", "output": ...} or {"outcome": "error", "type": ..., "message": ...}.
  serve --jwks-uri URL [--scope S]   (binds its own socket, prints "listening on URL" first)
      The reference echo agent with its OAuth2 middleware on (create_app(oauth2_config=...)).
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
    import httpx
    from asap.auth.middleware import OAuth2Config
    from asap.auth.oauth2 import OAuth2ClientCredentials
    from asap.examples.echo_agent import build_manifest
    from asap.examples.echo_agent import create_echo_handler
    from asap.models.envelope import Envelope
    from asap.transport.client import ASAPClient
    from asap.transport.handlers import HandlerRegistry
    from asap.transport.server import create_app


class Bearer(httpx.AsyncBaseTransport):
    """Adds the bearer token to every request (ASAPClient has no option for it)."""

    def __init__(self, token):
        self.token = token
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


async def token(args):
    source = OAuth2ClientCredentials(args.client_id, args.client_secret, args.token_url, scope=args.scope)
    tok = await source.get_valid_token()
    again = await source.get_valid_token()
    print(json.dumps({"access_token": tok.access_token, "token_type": tok.token_type,
                      "expires_at": tok.expires_at, "cached": again.access_token == tok.access_token}))


async def call(args):
    envelope = Envelope(asap_version="0.1", sender="urn:asap:agent:reference-client", recipient=args.agent_id,
                        payload_type="task.request",
                        payload={"conversation_id": "conv-1", "skill_id": "echo", "input": {"n": 7}})
    transport = Bearer(args.token) if args.token else None
    try:
        async with ASAPClient(args.url, require_https=False, transport_mode="http", max_retries=1,
                              transport=transport) as client:
            reply = await client.send(envelope)
        print(json.dumps({"outcome": "ok", "payload_type": reply.payload_type, "output": reply.payload.get("result")}))
    except Exception as e:  # the test asserts on the type and message
        print(json.dumps({"outcome": "error", "type": type(e).__name__, "message": str(e)}))


def serve(args):
    from listen import serve as serve_on_own_socket

    def build(base):
        registry = HandlerRegistry()
        registry.register("task.request", create_echo_handler())
        config = OAuth2Config(jwks_uri=args.jwks_uri, required_scope=args.scope or None)
        return create_app(build_manifest(f"{base}/asap"), registry, oauth2_config=config, rate_limit="1000/second")

    serve_on_own_socket(build)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("token")
    t.add_argument("--token-url", required=True)
    t.add_argument("--client-id", required=True)
    t.add_argument("--client-secret", required=True)
    t.add_argument("--scope")
    c = sub.add_parser("call")
    c.add_argument("--url", required=True)
    c.add_argument("--agent-id", required=True)
    c.add_argument("--token")
    s = sub.add_parser("serve")
    s.add_argument("--jwks-uri", required=True)
    s.add_argument("--scope", default="asap:execute")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    else:
        asyncio.run({"token": token, "call": call}[args.command](args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
