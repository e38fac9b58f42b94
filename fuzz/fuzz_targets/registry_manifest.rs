//! Lite Registry documents and agent manifests, as discovery reads them: the registry
//! parser and its lookups, the manifest model (parse → encode → parse, byte-stable), and
//! a registry entry made from a manifest, which a registry must read back.
#![no_main]

use asap_fuzz::model_round_trip;
use asap_protocol::discovery::{LiteRegistry, RegistryEntry, agent_base_url};
use asap_protocol::model::{Manifest, Timestamp};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn check_registry(registry: &LiteRegistry) {
    let text = serde_json::to_vec(registry).expect("a registry serializes");
    let again = LiteRegistry::parse(&text, "round trip")
        .unwrap_or_else(|e| panic!("its own JSON does not read back: {e}"));
    assert_eq!(&again, registry);
    for entry in &registry.agents {
        assert!(registry.find_by_id(&entry.id).is_some());
        for skill in &entry.skills {
            assert!(registry.find_by_skill(skill).contains(&entry));
        }
        if let Some(base) = entry.base_url() {
            let endpoints = RegistryEntry::endpoints_for(&base);
            assert_eq!(agent_base_url(&endpoints[0].1), base.trim_end_matches('/'));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(registry) = LiteRegistry::parse(data, "fuzz") {
        check_registry(&registry);
    }
    let Some(manifest) = model_round_trip::<Manifest>(data) else {
        return;
    };
    let base = agent_base_url(&manifest.endpoints.asap);
    let entry = RegistryEntry::from_manifest(&manifest, RegistryEntry::endpoints_for(&base));
    let document = json!({
        "version": "1.0",
        "updated_at": Timestamp::now(),
        "agents": [entry],
    });
    let text = serde_json::to_vec(&document).expect("serializes");
    match LiteRegistry::parse(&text, "from a manifest") {
        Ok(registry) => check_registry(&registry),
        Err(e) => panic!("a valid manifest's registry entry is refused: {e}"),
    }
});
