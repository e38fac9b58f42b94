#!/usr/bin/env python3
"""Generate the wire-model conformance corpus with the reference implementation.

Usage: python gen_corpus.py OUT.jsonl

Runs asap-protocol 1.1.0 (the Python reference) over a large set of documents for
every model (valid ones, and systematic mutations of every member) and writes one JSON
line per document:

    {"case": id, "model": name, "input": json_text,
     "ref": {"ok": true, "dump": model_dump_json(), "generated": [members filled in]}
         or {"ok": false, "exception": class name, "errors": [{"type", "loc", "msg"}]}}

The reference reads each document as its server does: `json.loads`, then
`Model.model_validate` (for Part, the discriminated-union TypeAdapter). The corpus is
deterministic except for the values of generated members (`id`, `timestamp`).
"""

import contextlib
import copy
import io
import json
import logging
import sys
import warnings

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from pydantic import ValidationError
    from asap.models import entities, envelope, parts, payloads

MODELS = {
    "Envelope": envelope.Envelope,
    **{n: getattr(payloads, n) for n in (
        "TaskRequest TaskResponse TaskUpdate TaskCancel MessageSend StateQuery StateRestore ArtifactNotify "
        "McpToolCall McpToolResult McpResourceFetch McpResourceData MessageAck").split()},
    **{n: getattr(parts, n) for n in "TextPart DataPart FilePart ResourcePart TemplatePart".split()},
    **{n: getattr(entities, n) for n in (
        "Manifest Skill Capability Endpoint AuthScheme Agent Conversation Task Message Artifact StateSnapshot").split()},
}

TS = "2026-01-15T10:30:00.123456Z"

# asap-protocol 2.x (2.5.10): the new models, read by our 2.x dialect.
TWO_X = hasattr(payloads, "TaskStream")
if TWO_X:
    MODELS.update({n: getattr(payloads, n) for n in "TaskStream TaskRequestConfig TaskMetrics".split()})
    MODELS.update({n: getattr(entities, n) for n in (
        "SLADefinition VerificationStatus HardwareCapability InferenceCapability LocalModelInfo").split()})

# One valid, complete document per model.
VALID = {
    "Envelope": {
        "id": "01KF0ZQ8ZB5M3X0V6G9N4T2W1A", "asap_version": "0.1", "timestamp": TS,
        "sender": "urn:asap:agent:coordinator", "recipient": "urn:asap:agent:research-v1",
        "payload_type": "task.request",
        "payload": {"conversation_id": "conv_1", "skill_id": "web_research", "input": {"q": "x"}},
        "correlation_id": None, "trace_id": "trace-01", "requires_ack": False, "extensions": {"nonce": "n-1"},
    },
    "TaskRequest": {"conversation_id": "conv_1", "parent_task_id": "task_0", "skill_id": "echo",
                    "input": {"q": "x", "n": 10}, "config": {"timeout_seconds": 600, "streaming": True}},
    "TaskResponse": {"task_id": "task_1", "status": "completed", "result": {"summary": "ok"},
                     "final_state": {"s": 1}, "metrics": {"duration_ms": 12}},
    "TaskUpdate": {"task_id": "task_1", "update_type": "progress", "status": "working",
                   "progress": {"percent": 45, "message": "half"}, "input_request": None},
    "TaskCancel": {"task_id": "task_1", "reason": "user asked"},
    "MessageSend": {"task_id": "task_1", "message_id": "msg_1", "sender": "urn:asap:agent:a",
                    "role": "assistant", "parts": ["part_1", "part_2"]},
    "StateQuery": {"task_id": "task_1", "version": 3},
    "StateRestore": {"task_id": "task_1", "snapshot_id": "snap_1"},
    "ArtifactNotify": {"artifact_id": "art_1", "task_id": "task_1", "name": "report.pdf"},
    "McpToolCall": {"request_id": "r1", "tool_name": "search", "arguments": {"q": "x"}, "mcp_context": {"server": "s"}},
    "McpToolResult": {"request_id": "r1", "success": True, "result": {"hits": 3}, "error": None},
    "McpResourceFetch": {"resource_uri": "mcp://server/resource/1"},
    "McpResourceData": {"resource_uri": "mcp://server/resource/1", "content": {"text": "hello"}},
    "MessageAck": {"original_envelope_id": "01KF0ZQ8ZB5M3X0V6G9N4T2W1A", "status": "rejected", "error": "bad"},
    "TextPart": {"type": "text", "content": "hello"},
    "DataPart": {"type": "data", "data": {"k": [1, 2]}, "schema_uri": "https://example.com/s.json"},
    "FilePart": {"type": "file", "uri": "https://example.com/a.pdf", "mime_type": "application/pdf", "inline_data": "SGVsbG8="},
    "ResourcePart": {"type": "resource", "resource_uri": "mcp://r/1"},
    "TemplatePart": {"type": "template", "template": "Hi {{name}}", "variables": {"name": "Ada"}},
    "Skill": {"id": "echo", "description": "Echo", "input_schema": {"type": "object"}, "output_schema": None},
    "Capability": {"asap_version": "0.1", "skills": [{"id": "echo", "description": "Echo"}], "state_persistence": True,
                   "streaming": False, "mcp_tools": ["search"]},
    "Endpoint": {"asap": "http://127.0.0.1:8000/asap", "events": "ws://127.0.0.1:8000/asap/ws"},
    "AuthScheme": {"schemes": ["bearer"], "oauth2": {"token_url": "https://idp/token", "scopes": ["asap:execute"]}},
    "Manifest": {
        "id": "urn:asap:agent:echo-agent", "name": "Echo Agent", "version": "1.0.0", "description": "Echoes",
        "capabilities": {"asap_version": "0.1", "skills": [{"id": "echo", "description": "Echo back"}],
                         "state_persistence": False, "streaming": False, "mcp_tools": []},
        "endpoints": {"asap": "http://127.0.0.1:8000/asap", "events": None},
        "auth": {"schemes": ["bearer"], "oauth2": None}, "signature": None, "ttl_seconds": 300,
    },
    "Agent": {"id": "urn:asap:agent:a", "manifest_uri": "https://a/.well-known/asap/manifest.json", "capabilities": ["echo"]},
    "Conversation": {"id": "conv_1", "participants": ["urn:asap:agent:a", "anyone"], "created_at": TS, "metadata": {"p": 1}},
    "Task": {"id": "task_1", "conversation_id": "conv_1", "parent_task_id": None, "status": "working", "depth": 1,
             "progress": {"percent": 45}, "created_at": TS, "updated_at": "2026-01-15T10:31:00.25Z"},
    "Message": {"id": "msg_1", "task_id": "task_1", "sender": "not a urn", "role": "user", "parts": [], "timestamp": TS},
    "Artifact": {"id": "art_1", "task_id": "task_1", "name": "a", "parts": ["p"], "created_at": TS},
    "StateSnapshot": {"id": "snap_1", "task_id": "task_1", "version": 1, "data": {"k": "v"}, "checkpoint": True,
                      "created_at": TS},
}

if TWO_X:
    VALID.update({
        "TaskStream": {"chunk": "word ", "progress": 0.5, "final": False, "status": "working"},
        "TaskRequestConfig": {"timeout_seconds": 5, "priority": "high", "idempotency_key": "k", "streaming": True,
                              "persist_state": False, "model": "m", "temperature": 0.7},
        "TaskMetrics": {"duration_ms": 12, "tokens_in": 3, "tokens_out": 4, "tokens_used": 7, "api_calls": 1},
        "SLADefinition": {"availability": "99.5%", "max_latency_p95_ms": 500, "max_error_rate": "1%",
                          "support_hours": "24/7"},
        "VerificationStatus": {"status": "verified", "verified_at": TS},
        "HardwareCapability": {"class": "sbc", "model": "rpi5", "io": ["gpio", "i2c"]},
        "InferenceCapability": {"modes": ["local_cpu"], "local_models": [
            {"id": "llama", "quantization": "Q4_K_M", "throughput_tokens_per_second": 12.5}]},
        "LocalModelInfo": {"id": "llama", "quantization": "Q4_K_M", "throughput_tokens_per_second": 12.5},
    })
    VALID["Manifest"] = dict(VALID["Manifest"], supported_versions=["2.1", "2.2"], sla=VALID["SLADefinition"],
                             verification={"status": "pending", "verified_at": None})
    VALID["Capability"] = dict(VALID["Capability"], hardware=VALID["HardwareCapability"],
                               inference=VALID["InferenceCapability"])
    VALID["TaskRequest"] = dict(VALID["TaskRequest"], config=VALID["TaskRequestConfig"])
    VALID["TaskResponse"] = dict(VALID["TaskResponse"], metrics=dict(VALID["TaskMetrics"], cost=0.25))

# Values every member is tried with: wrong types, lax coercions, edge values.
MUTATIONS = [
    None, True, False, 0, 1, 2, -1, 2.0, 2.5, 1e30, 10**30, "", "x", "5", " 5 ", "5.0", "1_000", "1e3", "yes",
    "No", "off", "T", "2026-01-15T10:30:00Z", "2026-01-15", "urn:asap:agent:x", "completed", "progress", "user",
    "received", "text", [], ["a"], [1], {}, {"k": 1}, {"percent": 50},
]

CASES = []


def add(case_id, model, text):
    CASES.append((case_id, model, text))


def doc(case_id, model, obj):
    add(case_id, model, json.dumps(obj, ensure_ascii=False))


def with_member(model, member, value, base=None):
    obj = copy.deepcopy(base if base is not None else VALID[model])
    obj[member] = value
    return obj


def without(model, member, base=None):
    obj = copy.deepcopy(base if base is not None else VALID[model])
    obj.pop(member, None)
    return obj


def members(model):
    return list(MODELS[model].model_fields)


# --- every model: valid, minimal, each member missing, unknown member, mutations ----------
for model in VALID:
    doc(f"{model}/valid", model, VALID[model])
    required = [m for m, f in MODELS[model].model_fields.items() if f.is_required()]
    doc(f"{model}/minimal", model, {m: VALID[model][m] for m in required})
    for m in members(model):
        doc(f"{model}/missing/{m}", model, without(model, m))
    doc(f"{model}/extra_member", model, with_member(model, "unexpected", 1))
    doc(f"{model}/not_object/list", model, [VALID[model]])
    doc(f"{model}/not_object/string", model, "text")
    doc(f"{model}/not_object/null", model, None)
    for m in members(model):
        for i, value in enumerate(MUTATIONS):
            doc(f"{model}/mutate/{m}/{i}", model, with_member(model, m, value))

# --- nested models inside a manifest -------------------------------------------------------
for sub, path in [("capabilities", "Capability"), ("endpoints", "Endpoint"), ("auth", "AuthScheme")]:
    for m in members(path):
        for i, value in enumerate(MUTATIONS):
            obj = copy.deepcopy(VALID["Manifest"])
            obj[sub] = with_member(path, m, value, obj[sub] if obj[sub] else VALID[path])
            doc(f"Manifest/{sub}/{m}/{i}", "Manifest", obj)
    obj = copy.deepcopy(VALID["Manifest"])
    obj[sub] = dict(obj[sub] or VALID[path], extra=True)
    doc(f"Manifest/{sub}/extra", "Manifest", obj)
for m in members("Skill"):
    for i, value in enumerate(MUTATIONS):
        obj = copy.deepcopy(VALID["Manifest"])
        obj["capabilities"]["skills"] = [VALID["Skill"], with_member("Skill", m, value)]
        doc(f"Manifest/skills/1/{m}/{i}", "Manifest", obj)

# --- agent URNs ------------------------------------------------------------------------------
URNS = [
    "urn:asap:agent:a", "urn:asap:agent:research-v1", "urn:asap:agent:0", "urn:asap:agent:-", "urn:asap:agent:foo:bar",
    "urn:asap:agent:foo:bar:baz", "urn:asap:agent:Foo", "urn:asap:agent:under_score", "urn:asap:agent:dot.ted",
    "urn:asap:agent:", "urn:asap:agent:a:", "urn:asap:agent::b", "urn:asap:agent:foo\n", " urn:asap:agent:foo",
    "urn:asap:agent:foo ", "URN:asap:agent:foo", "urn:asap:agent:caf\u00e9", "urn:asap:agent:\u0430", "urn:asap:agents:x",
    "urn:asap:agent:" + "a" * 241, "urn:asap:agent:" + "a" * 242, "urn:asap:agent:" + "a" * 300,
    "urn:asap:agent:x:" + "b" * 239,
]
for i, urn in enumerate(URNS):
    for model, member in [("Envelope", "sender"), ("Envelope", "recipient"), ("Agent", "id"), ("Manifest", "id"),
                          ("MessageSend", "sender"), ("Message", "sender")]:
        doc(f"urn/{model}.{member}/{i}", model, with_member(model, member, urn))
    doc(f"urn/Conversation.participants/{i}", "Conversation", with_member("Conversation", "participants", [urn]))

# --- envelope specifics -----------------------------------------------------------------------
for pt in ["TaskResponse", "McpToolResult", "McpResourceData", "task.response", "mcp.tool_result", "MessageAck",
           "anything.else", "", "TASKRESPONSE"]:
    for label, cid in [("absent", ...), ("null", None), ("empty", ""), ("set", "01KF0ZQ8ZB5M3X0V6G9N4T2W1Q")]:
        obj = with_member("Envelope", "payload_type", pt)
        if cid is ...:
            obj.pop("correlation_id")
        else:
            obj["correlation_id"] = cid
        doc(f"Envelope/correlation/{pt or 'empty'}/{label}", "Envelope", obj)
if TWO_X:
    # The payload typed by its normalised payload_type (2.x only).
    for pt in ["task.request", "TaskRequest", "task_request", "TASK-REQUEST", "task.stream", "TaskStream",
               "state.query", "MessageAck", "message_ack", "task.update", "custom.thing"]:
        for label, payload in [("valid_request", VALID["TaskRequest"]), ("empty", {}), ("stream", VALID["TaskStream"]),
                               ("bad_config", dict(VALID["TaskRequest"], config={"foo": 1})),
                               ("query", {"task_id": "t", "version": "x"})]:
            obj = with_member("Envelope", "payload_type", pt)
            obj["payload"] = payload
            obj["correlation_id"] = "01KF0ZQ8ZB5M3X0V6G9N4T2W1Q"
            doc(f"Envelope/typed/{pt}/{label}", "Envelope", obj)
    # An unknown payload_type: 2.5.10's smart union types the payload when a model
    # takes it without coercion (the most members set wins, the first on a tie).
    for i, payload in enumerate([
        {}, {"task_id": "t"}, {"task_id": "t", "version": 1}, {"task_id": "t", "reason": None}, {"chunk": "x"},
        {"q": 1}, {"task_id": "t", "status": "completed"}, {"request_id": "r", "success": True, "result": {}},
        {"resource_uri": "u"}, {"task_id": "t", "snapshot_id": "s"}, {"final": "yes"}, {"chunk": "x", "progress": 1},
        {"task_id": "t", "version": True}, {"original_envelope_id": "e", "status": "received"},
        {"conversation_id": "c", "skill_id": "s", "input": {}, "config": {"streaming": "yes"}},
        {"conversation_id": "c", "skill_id": "s", "input": {}, "config": {"temperature": 1}},
        {"chunk": "x", "status": "completed"}, {"artifact_id": "a", "task_id": "t"}, {"task_id": "t", "version": None},
        {"request_id": "r", "tool_name": "t", "arguments": {}}, {"progress": 0.5}, {"final": True}, {"chunk": 5},
        {"task_id": "t", "snapshot_id": "s", "reason": None}, {"resource_uri": "u", "content": {}},
        {"task_id": "t", "update_type": "progress", "status": "working"}, {"task_id": "t", "version": "3"},
        {"task_id": "t", "version": 2.0}, {"progress": 1}, {"chunk": "x", "status": None},
    ]):
        obj = with_member("Envelope", "payload_type", "custom.thing")
        obj["payload"] = payload
        doc(f"Envelope/union/{i}", "Envelope", obj)
    obj = with_member("Envelope", "payload", {})
    obj["sender"] = "bad urn"
    doc("Envelope/typed/payload_error_first", "Envelope", obj)
for label, mutate in [
    ("no_id", lambda o: o.pop("id")), ("null_id", lambda o: o.update(id=None)),
    ("no_timestamp", lambda o: o.pop("timestamp")), ("null_timestamp", lambda o: o.update(timestamp=None)),
    ("no_id_no_timestamp", lambda o: (o.pop("id"), o.pop("timestamp"))),
    ("only_required", lambda o: [o.pop(k) for k in ("id", "timestamp", "correlation_id", "trace_id", "requires_ack", "extensions")]),
]:
    obj = copy.deepcopy(VALID["Envelope"])
    mutate(obj)
    doc(f"Envelope/generated/{label}", "Envelope", obj)

# --- timestamps -------------------------------------------------------------------------------
TIMESTAMPS = [
    "2026-01-15T10:30:00Z", "2026-01-15T10:30:00z", "2026-01-15T10:30:00+00:00", "2026-01-15T10:30:00-00:00",
    "2026-01-15T12:30:00.5+02:00", "2026-01-15T10:30:00+0200", "2026-01-15T10:30:00-05:30", "2026-01-15 10:30:00z",
    "2026-01-15t10:30:00Z", "2026-01-15T10:30:00,5Z", "2026-01-15T10:30:00.1Z", "2026-01-15T10:30:00.12Z",
    "2026-01-15T10:30:00.123Z", "2026-01-15T10:30:00.1234Z", "2026-01-15T10:30:00.12345Z", "2026-01-15T10:30:00.123456Z",
    "2026-01-15T10:30:00.1234567Z", "2026-01-15T10:30:00.123456789Z", "2026-01-15T10:30:00.123456789012Z",
    "2026-01-15T10:30:00.000000Z", "2026-01-15T10:30Z", "2026-01-15T10:30", "2026-01-15T10:30:00", "2026-01-15",
    "2026-01-15T10", "2026-01-15T", "20260115T103000Z", "2026-1-15T10:30:00Z", "2026-01-15T10:30:00.Z",
    "2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-01-15T24:00:00Z", "2026-01-15T23:59:60Z", "2026-01-15T10:60:00Z", "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", " 2026-01-15T10:30:00Z", "2026-01-15T10:30:00Z ",
    "2026-01-15T10:30:00 Z", "2026-01-15T10:30:00+01", "2026-01-15T10:30:00+01:30:15", "2026-01-15T10:30:00+24:00",
    "2026-01-15T10:30:00+23:59", "2026-01-15T10:30:00-23:59", "2026-01-15T10:30:00+05:60", "now", "", "nan",
    "1768473000", "1768473000.25", "-1", "1768473000123", " 1768473000", "1768473000.", "1e9",
    1768473000, 1768473000.5, 1768473000.1, 1768473000.123456, 1768473000.9999999, 1768473000123, 1768473000123.5,
    20000000000, 20000000001, -20000000001, 0, -1, 1, 0.5, -0.5, 1e20, 253402300799, 253402300800, 253402300799999,
    253402300800000, -62135596800, -62135596801, 1768473000123456, True, False, None, [], {},
]
for i, ts in enumerate(TIMESTAMPS):
    doc(f"timestamp/Task.created_at/{i}", "Task", with_member("Task", "created_at", ts))
    doc(f"timestamp/Envelope.timestamp/{i}", "Envelope", with_member("Envelope", "timestamp", ts))
for i, ts in enumerate(TIMESTAMPS[:30]):
    for model, member in [("Message", "timestamp"), ("StateSnapshot", "created_at"), ("Conversation", "created_at"),
                          ("Artifact", "created_at")]:
        doc(f"timestamp/{model}.{member}/{i}", model, with_member(model, member, ts))

# --- constraints -----------------------------------------------------------------------------
for v in [0, 1, -5, 300, "10", 1.0, 1.5, True, 10**30]:
    doc(f"Manifest/ttl/{v!r}", "Manifest", with_member("Manifest", "ttl_seconds", v))
for v in [-1, 0, 10, 11, "3", 2.0, True, 10**30, -(10**30)]:
    doc(f"Task/depth/{v!r}", "Task", with_member("Task", "depth", v))
for v in [0, 1, 2, -1, "7", 10**30]:
    doc(f"StateSnapshot/version/{v!r}", "StateSnapshot", with_member("StateSnapshot", "version", v))
doc("Agent/capabilities/empty", "Agent", with_member("Agent", "capabilities", []))
doc("Conversation/participants/empty", "Conversation", with_member("Conversation", "participants", []))
for i, pct in enumerate([-1, 0, 100, 101, 50.5, 100.0, 100.1, "50", True, False, None, [], 10**30, -0.0]):
    doc(f"TaskUpdate/percent/{i}", "TaskUpdate", with_member("TaskUpdate", "progress", {"percent": pct}))
doc("TaskUpdate/progress/no_percent", "TaskUpdate", with_member("TaskUpdate", "progress", {"eta": 3}))
doc("TaskUpdate/progress/empty", "TaskUpdate", with_member("TaskUpdate", "progress", {}))
for success in [True, False, "yes", 0]:
    for result in [None, {}, {"a": 1}]:
        for error in [None, "", "boom"]:
            obj = {"request_id": "r", "success": success, "result": result, "error": error}
            doc(f"McpToolResult/exclusive/{success!r}/{result!r}/{error!r}", "McpToolResult", obj)
VERSIONS = [
    "1.0.0", "1.0", "1", "v1.0.0", "V1.0", "1.0.0-dev", "1.0.0-beta.1", "1.0.0-rc.1+build.5", "2026.01", "1!2.0",
    "1.0.post1", "1.0-1", " 1.0 ", "1.0\n", "abc", "1.0.0-SNAPSHOT", "", "1..0", ".1", "1.0+", "1.0+abc_def", "1.0a",
    "1.0.dev", "\u0661.0", "1.0RC1", "1.0.0.0.0", "01.02", "1.0-alpha", "1.0.0-preview2", "1.0c1", "1.0r", "1.0-r-5",
    "1.0.0_dev", "1.0.0+local.7", "1.0.0+", "v", "1.0 beta", "1.0-", "1.0.0.", "1.0_", "1.0.post", "1!", "!1",
]
for i, v in enumerate(VERSIONS):
    doc(f"Manifest/version/{i}", "Manifest", with_member("Manifest", "version", v))
for i, schemes in enumerate([["bearer"], ["Bearer"], ["BASIC"], [], ["oauth2"], ["bearer", "oauth2"], ["basic", "bearer"], [""]]):
    obj = copy.deepcopy(VALID["Manifest"])
    obj["auth"] = {"schemes": schemes}
    doc(f"Manifest/auth_schemes/{i}", "Manifest", obj)

# --- enums and literals ------------------------------------------------------------------------
for model, member, values in [
    ("TaskResponse", "status", ["submitted", "working", "completed", "failed", "cancelled", "input_required", "Completed", "done"]),
    ("TaskUpdate", "update_type", ["progress", "input_required", "status_change", "PROGRESS", "other"]),
    ("Message", "role", ["user", "assistant", "system", "User", "bot"]),
    ("MessageAck", "status", ["received", "processed", "rejected", "RECEIVED", "ok"]),
    ("Task", "status", ["submitted", "input_required", "canceled"]),
]:
    for v in values:
        doc(f"{model}/{member}/{v}", model, with_member(model, member, v))

# --- parts ----------------------------------------------------------------------------------------
for kind in ["TextPart", "DataPart", "FilePart", "ResourcePart", "TemplatePart"]:
    doc(f"Part/{kind}", "Part", VALID[kind])
    doc(f"Part/{kind}/minimal", "Part", {k: v for k, v in VALID[kind].items() if MODELS[kind].model_fields[k].is_required()})
    doc(f"Part/{kind}/extra", "Part", dict(VALID[kind], extra=1))
    for m in members(kind):
        doc(f"Part/{kind}/missing/{m}", "Part", without(kind, m))
for i, tag in enumerate(["video", "Text", "", 5, None, True, ["text"]]):
    doc(f"Part/tag/{i}", "Part", {"type": tag, "content": "x"})
doc("Part/no_tag", "Part", {"content": "x"})
for i, value in enumerate(["text", 5, [], None]):
    doc(f"Part/not_object/{i}", "Part", value)
for i, uri in enumerate(["https://x/a", "a/../b", "..", "file:///etc/passwd", " FILE://x", "\tfile://x", "File://x",
                         "data:text/plain;base64,SGk=", "asap://r/1", "", "fil e://x", "a..b"]):
    doc(f"FilePart/uri/{i}", "FilePart", with_member("FilePart", "uri", uri))
    doc(f"Part/file_uri/{i}", "Part", with_member("FilePart", "uri", uri))
for i, mime in enumerate(["text/plain", "Text/Plain", "application/vnd.api+json", "text", "text/plain; charset=utf-8",
                          "text/plain\n", "TEXT/\u212a", "text/", "/plain", "a/b/c", "image/svg+xml", "x-y/z.w",
                          "text/pl ain", "", "\u00e9/x"]):
    doc(f"FilePart/mime/{i}", "FilePart", with_member("FilePart", "mime_type", mime))
for i, data in enumerate(["", "SGVsbG8=", "SGVsbG8", "SGVsbA==", "SGVsbA=", "SGVsbA===", "=SGk", "SGk=SGk=", "SG Vs",
                          "SGk\n", "\u00e9", "A", "AB==", "ABC=", "ABCD", "AB=C", "A===", "ABCD=", "SGVsbG8-", "SGVs_G8=",
                          None]):
    doc(f"FilePart/inline_data/{i}", "FilePart", with_member("FilePart", "inline_data", data))

# --- free-form values: unicode, numbers, nesting ---------------------------------------------------
FREE_FORM = [
    ("Envelope", "payload"), ("Envelope", "extensions"), ("TaskRequest", "input"), ("TaskRequest", "config"),
    ("StateSnapshot", "data"), ("Conversation", "metadata"), ("McpToolCall", "arguments"),
    ("McpResourceData", "content"), ("TemplatePart", "variables"), ("Task", "progress"),
]
VALUES = [
    "h\u00e9llo \u2713 \u65e5\u672c", "\U0001F600 emoji", "\u0000 nul", "tab\tnew\nline\r", "quote \" back \\ slash /",
    "\u007f del \u0080 \u00a0 nbsp", "\u2028\u2029", "", 2**63 - 1, 2**63, 2**64, 10**30, -(2**70), 0, -0,
    0.1, 1.0, -0.0, 1e5, 1e-5, 1e-6, 1e-7, 1.5e-7, 1e15, 1e16, 1e21, 1e22, 5e-324, 123456789.123456789,
    1.7976931348623157e308, 2.5, 100.0, 0.000123, True, None, [], {}, [1, [2, [3, {"a": [4]}]]],
]
for model, member in FREE_FORM:
    for i, v in enumerate(VALUES):
        doc(f"freeform/{model}.{member}/{i}", model, with_member(model, member, {"v": v, "\u00e9 key": [v]}))
RAW_NUMBERS = ["1E5", "1e400", "-1e400", "1.50", "-0", "-0.0", "12345678901234567890123", "0.1e1", "1E-7",
               "100000000000000000000.0", "1.7976931348623159e308", "3.0e10", "2e-324"]
for i, raw in enumerate(RAW_NUMBERS):
    add(f"raw_number/{i}", "StateSnapshot",
        '{"id":"s","task_id":"t","version":1,"data":{"x":%s,"y":[%s]},"created_at":"2026-01-15T10:30:00Z"}' % (raw, raw))
env = json.dumps(VALID["Envelope"])
add("raw/escaped_unicode", "Envelope", env.replace('"x"', '"\\u00e9\\ud83d\\ude00"'))
add("raw/lone_surrogate", "Envelope", env.replace('"x"', '"\\ud800"'))
add("raw/duplicate_member", "Envelope", env[:-1] + ', "sender": "urn:asap:agent:later"}')
add("raw/duplicate_in_payload", "Envelope", env.replace('"q": "x"', '"q": "x", "z": 1, "q": "last"'))
add("raw/nan", "Envelope", env.replace('"q": "x"', '"q": NaN'))
add("raw/infinity", "Envelope", env.replace('"q": "x"', '"q": -Infinity'))
add("raw/trailing_comma", "Envelope", env[:-1] + ",}")
add("raw/single_quotes", "Envelope", env.replace('"', "'"))
add("raw/bom", "Envelope", "\ufeff" + env)
add("raw/empty", "Envelope", "")
add("raw/whitespace", "Envelope", " \n\t" + env + " \n")
for depth in (10, 60, 127, 200):
    nested = "[" * depth + "1" + "]" * depth
    add(f"raw/nesting_{depth}", "Envelope", env.replace('"x"', nested))


def run(model, text):
    try:
        obj = json.loads(text)
    except ValueError as e:
        return {"ok": False, "exception": type(e).__name__, "errors": []}
    try:
        if model == "Part":
            value = parts.Part.validate_python(obj)
        else:
            value = MODELS[model].model_validate(obj)
    except ValidationError as e:
        errors = [{"type": x["type"], "loc": list(x["loc"]), "msg": x["msg"]} for x in e.errors()]
        return {"ok": False, "exception": "ValidationError", "errors": errors}
    except Exception as e:  # noqa: BLE001 - the reference raises its own errors outside validation
        return {"ok": False, "exception": type(e).__name__, "errors": []}
    generated = []
    if model == "Envelope":
        generated = [m for m in ("id", "timestamp") if obj.get(m) is None]
    try:
        dump = value.model_dump_json()
    except Exception as e:  # noqa: BLE001 - e.g. a lone surrogate validates but cannot be written
        return {"ok": True, "dump": None, "dump_error": str(e), "generated": generated}
    return {"ok": True, "dump": dump, "generated": generated}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_corpus.py OUT.jsonl")
    seen = set()
    valid = invalid = 0
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        for case_id, model, text in CASES:
            if case_id in seen:
                sys.exit(f"duplicate case id {case_id}")
            seen.add(case_id)
            ref = run(model, text)
            valid += ref["ok"]
            invalid += not ref["ok"]
            out.write(json.dumps({"case": case_id, "model": model, "input": text, "ref": ref}, ensure_ascii=False) + "\n")
    print(f"gen_corpus: {len(CASES)} cases ({valid} valid, {invalid} invalid)", file=sys.stderr)


if __name__ == "__main__":
    main()
