#!/usr/bin/env python3
"""Check that exported JSON Schemas accept every document the reference accepted.

Usage: python check_schemas.py SCHEMA_DIR CORPUS.jsonl

For each corpus line the reference accepted, validates the reference's own
`model_dump_json()` output against SCHEMA_DIR/<file for the model> with a draft
2020-12 validator. Prints one line per failure and ends with
`schemas: N documents checked, N passed, N failed`; exits 1 on any failure or a
missing or invalid schema file.
"""

import json
import re
import sys
from pathlib import Path

from jsonschema import Draft202012Validator

DRAFT = "https://json-schema.org/draft/2020-12/schema"
PAYLOADS = ("TaskRequest TaskResponse TaskUpdate TaskCancel MessageSend StateQuery StateRestore ArtifactNotify "
            "McpToolCall McpToolResult McpResourceFetch McpResourceData MessageAck").split()
PARTS = "TextPart DataPart FilePart ResourcePart TemplatePart".split()
ENTITIES = "Manifest Skill Capability Endpoint AuthScheme Agent Conversation Task Message Artifact StateSnapshot".split()


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def schema_file(model):
    if model == "Envelope":
        return "envelope.schema.json"
    if model == "Part":
        return "parts/part.schema.json"
    for folder, names in (("payloads", PAYLOADS), ("parts", PARTS), ("entities", ENTITIES)):
        if model in names:
            return f"{folder}/{snake(model)}.schema.json"
    raise KeyError(model)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check_schemas.py SCHEMA_DIR CORPUS.jsonl")
    root = Path(sys.argv[1])
    validators, broken = {}, []
    checked = passed = 0
    for line in Path(sys.argv[2]).read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        case = json.loads(line)
        ref = case["ref"]
        if not ref["ok"] or ref.get("dump") is None:
            continue
        model = case["model"]
        if model not in validators:
            path = root / schema_file(model)
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
                if schema.get("$schema") != DRAFT:
                    raise ValueError(f"$schema is {schema.get('$schema')!r}, not {DRAFT}")
                Draft202012Validator.check_schema(schema)
                validators[model] = Draft202012Validator(schema)
            except Exception as e:  # noqa: BLE001 - report any unusable schema file
                broken.append(f"{path}: {e}")
                validators[model] = None
        validator = validators[model]
        checked += 1
        if validator is None:
            continue
        error = next(iter(validator.iter_errors(json.loads(ref["dump"]))), None)
        if error is None:
            passed += 1
        else:
            print(f"FAIL {case['case']} [{model}]: {error.message} at {list(error.absolute_path)}")
    for b in broken:
        print(f"BROKEN SCHEMA {b}")
    failed = checked - passed
    print(f"schemas: {checked} documents checked, {passed} passed, {failed} failed")
    sys.exit(1 if failed or broken else 0)


if __name__ == "__main__":
    main()
