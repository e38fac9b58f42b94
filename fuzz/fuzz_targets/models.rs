//! Every other wire model (entities, parts, payloads, health, metering) from the same
//! JSON: each one that accepts it must survive parse → encode → parse unchanged, with
//! byte-identical re-encoding.
#![no_main]

use asap_fuzz::value_round_trip;
use asap_protocol::model::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = asap_protocol::json::parse(data) else {
        return;
    };
    value_round_trip::<Skill>(&value);
    value_round_trip::<Capability>(&value);
    value_round_trip::<Endpoint>(&value);
    value_round_trip::<AuthScheme>(&value);
    value_round_trip::<Agent>(&value);
    value_round_trip::<Conversation>(&value);
    value_round_trip::<Task>(&value);
    value_round_trip::<Message>(&value);
    value_round_trip::<Artifact>(&value);
    value_round_trip::<StateSnapshot>(&value);
    value_round_trip::<HealthLoad>(&value);
    value_round_trip::<HealthStatus>(&value);
    value_round_trip::<UsageMetrics>(&value);
    value_round_trip::<UsageEvent>(&value);
    value_round_trip::<UsageAggregate>(&value);
    value_round_trip::<Part>(&value);
    value_round_trip::<TextPart>(&value);
    value_round_trip::<DataPart>(&value);
    value_round_trip::<FilePart>(&value);
    value_round_trip::<ResourcePart>(&value);
    value_round_trip::<TemplatePart>(&value);
    value_round_trip::<TaskRequest>(&value);
    value_round_trip::<TaskResponse>(&value);
    value_round_trip::<TaskUpdate>(&value);
    value_round_trip::<TaskCancel>(&value);
    value_round_trip::<MessageSend>(&value);
    value_round_trip::<StateQuery>(&value);
    value_round_trip::<StateRestore>(&value);
    value_round_trip::<ArtifactNotify>(&value);
    value_round_trip::<McpToolCall>(&value);
    value_round_trip::<McpToolResult>(&value);
    value_round_trip::<McpResourceFetch>(&value);
    value_round_trip::<McpResourceData>(&value);
    value_round_trip::<MessageAck>(&value);
});
