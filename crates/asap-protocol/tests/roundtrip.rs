//! Property: whatever envelope the model builds serializes and parses back to an
//! equal value, through every encoder the reference uses.

use asap_protocol::json::{self, JsonObject};
use asap_protocol::model::{Envelope, Model, Part, Task, TaskStatus, Timestamp};
use proptest::prelude::*;
use serde_json::{Number, Value};
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<i128>().prop_map(|i| Value::Number(i.to_string().parse::<Number>().unwrap())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| {
                let mut v = Value::Number(Number::from_f64(f).unwrap());
                json::normalize_numbers(&mut v);
                v
            }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = JsonObject> {
    prop::collection::vec(("[a-z_]{1,8}|\\PC{0,6}", json_value()), 0..6)
        .prop_map(|e| e.into_iter().collect())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (
        1i32..=9999,
        1u8..=12,
        1u8..=28,
        0u8..24,
        0u8..60,
        0u8..60,
        0u32..1_000_000,
        prop::option::of(-1439i32..=1439),
    )
        .prop_map(|(y, mo, d, h, mi, s, us, offset)| {
            let local = PrimitiveDateTime::new(
                Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d).unwrap(),
                Time::from_hms_micro(h, mi, s, us).unwrap(),
            );
            match offset {
                Some(minutes) => Timestamp::from_offset_datetime(
                    local.assume_offset(UtcOffset::from_whole_seconds(minutes * 60).unwrap()),
                ),
                None => Timestamp::naive(local),
            }
        })
}

fn urn() -> impl Strategy<Value = String> {
    "urn:asap:agent:[a-z0-9-]{1,20}(:[a-z0-9-]{1,10})?"
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (
            any::<String>(),
            any::<String>(),
            timestamp(),
            urn(),
            urn(),
            "[a-z.]{1,20}|TaskRequest|\\PC{0,10}",
        ),
        (
            object(),
            prop::option::of("[0-9A-Z]{26}"),
            prop::option::of(any::<String>()),
            any::<bool>(),
            prop::option::of(object()),
        ),
    )
        .prop_map(
            |(
                (id, asap_version, timestamp, sender, recipient, payload_type),
                (payload, correlation_id, trace_id, requires_ack, extensions),
            )| Envelope {
                id,
                asap_version,
                timestamp,
                sender,
                recipient,
                payload_type,
                payload,
                correlation_id,
                trace_id,
                requires_ack,
                extensions,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn envelope_round_trips_through_model_json(e in envelope()) {
        let text = e.to_json();
        let back = Envelope::from_json(text.as_bytes()).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.to_json(), text);
    }

    #[test]
    fn envelope_round_trips_through_every_encoder(e in envelope()) {
        for text in [json::to_compact(&e), json::to_python_default(&e), json::to_canonical(&e)] {
            let back = Envelope::from_json(text.as_bytes()).unwrap();
            prop_assert_eq!(&back, &e);
        }
    }

    #[test]
    fn canonical_form_is_ascii_and_stable(v in json_value()) {
        let once = json::to_canonical(&v);
        prop_assert!(once.is_ascii());
        let again = json::to_canonical(&json::parse(once.as_bytes()).unwrap());
        prop_assert_eq!(again, once);
    }

    #[test]
    fn timestamps_round_trip_as_text(t in timestamp()) {
        let text = t.to_string();
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn tasks_and_text_parts_round_trip(id in any::<String>(), content in any::<String>(), t in timestamp()) {
        let mut task = Task::new(id, "conv");
        task.status = TaskStatus::InputRequired;
        task.created_at = t;
        prop_assert_eq!(Task::from_json(task.to_json().as_bytes()).unwrap(), task);
        let part = Part::text(content);
        prop_assert_eq!(Part::from_json(part.to_json().as_bytes()).unwrap(), part);
    }
}
