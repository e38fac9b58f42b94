#!/usr/bin/env python3
"""Signed manifests with the ASAP 2.x reference (asap-protocol 2.5.10), for the interop
tests (crates/asap-cli/tests/interop_signed.rs).

Usage:
  ref25_signed.py verify FILE [PUBLIC_KEY_B64]
      `verify_manifest` on the signed document in FILE (with the embedded key, or the
      given one); prints "ok", or "refused: <message>" and exits 1.
  ref25_signed.py discover BASE_URL [PUBLIC_KEY_B64]
      `ASAPClient.get_manifest` of the agent at BASE_URL; with a key, verify_signatures
      on and the key trusted for its manifest URL. Prints the manifest as JSON
      (`model_dump(mode="json", by_alias=True)`), or "refused: <message>" and exits 1.
  ref25_signed.py serve FILE
      Serves the bytes of FILE at /.well-known/asap/manifest.json (through
      interop/listen.py: prints "listening on URL" once listening).
"""

import asyncio
import json
import sys
from pathlib import Path

# The package logs to standard output (its handlers are set up on import); the result
# alone goes there.
RESULT = sys.stdout
sys.stdout = sys.stderr

from asap.crypto.keys import load_public_key_from_base64
from asap.crypto.models import SignedManifest
from asap.crypto.signing import verify_manifest
from asap.errors import SignatureVerificationError

MANIFEST_PATH = "/.well-known/asap/manifest.json"


def refuse(error: Exception) -> None:
    message = getattr(error, "message", None) or str(error)
    print(f"refused: {type(error).__name__}: {message}", file=RESULT, flush=True)
    sys.exit(1)


def verify(path: str, key_b64: str | None) -> None:
    try:
        signed = SignedManifest.model_validate_json(Path(path).read_text(encoding="utf-8"))
        key = load_public_key_from_base64(key_b64) if key_b64 else None
        verify_manifest(signed, public_key=key)
    except (SignatureVerificationError, ValueError) as error:
        refuse(error)
    print("ok", file=RESULT, flush=True)


async def discover(base_url: str, key_b64: str | None) -> None:
    from asap.transport.client import ASAPClient

    options = {}
    if key_b64:
        options = {
            "verify_signatures": True,
            "trusted_manifest_keys": {base_url + MANIFEST_PATH: key_b64},
        }
    async with ASAPClient(
        base_url, require_https=False, transport_mode="http", **options
    ) as client:
        try:
            manifest = await client.get_manifest(base_url + MANIFEST_PATH)
        except (SignatureVerificationError, ValueError) as error:
            refuse(error)
    print(json.dumps(manifest.model_dump(mode="json", by_alias=True)), file=RESULT, flush=True)


def serve(path: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    sys.path.insert(0, str(Path(__file__).parent))
    from listen import serve as listen

    body = Path(path).read_bytes()

    async def manifest(_request):
        return Response(body, media_type="application/json")

    sys.stdout = RESULT  # listen.py announces the URL there
    listen(lambda _base: Starlette(routes=[Route(MANIFEST_PATH, manifest)]))


if __name__ == "__main__":
    command, target, *rest = sys.argv[1:]
    key = rest[0] if rest else None
    if command == "verify":
        verify(target, key)
    elif command == "discover":
        asyncio.run(discover(target, key))
    elif command == "serve":
        serve(target)
    else:
        sys.exit(f"unknown command {command!r}")
