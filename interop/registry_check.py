#!/usr/bin/env python3
"""Validates registry entries with the reference's models (asap-protocol 1.1.0).

Reads one JSON registry entry per line from standard input; for each prints the
reference's `RegistryEntry.model_validate(entry).model_dump_json()`, or `{"error": ...}`.
Then prints a `LiteRegistry` holding all valid entries (`model_dump_json`).
"""

import json
import sys

from asap.discovery.registry import LiteRegistry, RegistryEntry

entries = []
for line in sys.stdin:
    if not line.strip():
        continue
    try:
        entry = RegistryEntry.model_validate(json.loads(line))
        entries.append(entry)
        print(entry.model_dump_json())
    except Exception as e:  # reported to the test
        print(json.dumps({"error": str(e)}))
print(LiteRegistry(version="1.0", updated_at="2026-11-30T00:00:00Z", agents=entries).model_dump_json())
