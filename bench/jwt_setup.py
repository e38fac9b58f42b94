#!/usr/bin/env python3
"""Benchmark helper: makes an RSA key, writes DIR/jwks.json and prints a signed RS256
token (scope asap:execute, one hour) for `bench/jwt.sh`. Runs in the reference venv
(which ships cryptography and joserfc)."""

import json
import sys
import time

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
key_dict = key.as_dict(private=False)
key_dict.update({"kid": "bench", "alg": "RS256", "use": "sig"})
with open(f"{sys.argv[1]}/jwks.json", "w") as out:
    json.dump({"keys": [key_dict]}, out)
claims = {"sub": "bench-client", "scope": "asap:execute", "exp": int(time.time()) + 3600}
print(jwt.encode({"alg": "RS256", "kid": "bench"}, claims, key))
