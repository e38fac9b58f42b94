//! `model!`: declares a wire model once and derives everything else from it.
//!
//! From one declaration (fields in wire order, each with how it is read) this produces
//! the struct (serialized in declaration order, every member written), its
//! [`Model`](crate::model::Model) implementation (pydantic-compatible validation with
//! every error collected), its `Deserialize` implementation (through that same
//! validation) and its JSON Schema.

/// See the module documentation.
macro_rules! model {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(named $class:literal)? $(check $after:path)? {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident $(as $wire:literal)? : $ty:ty = $read:ident ( $($arg:expr),* )
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
        #[schemars(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::model::Model for $name {
            const NAME: &'static str = model!(@class $name $(, $class)?);

            fn validate_at(
                value: &serde_json::Value,
                loc: &$crate::model::Loc<'_>,
            ) -> $crate::model::Checked<Self> {
                const WIRE_NAMES: &[&str] = &[$( model!(@wire $field $(, $wire)?) ),*];
                let mut fields = $crate::model::validation::Fields::new(value, loc, Self::NAME, WIRE_NAMES)?;
                $( let $field = fields.$read(model!(@wire $field $(, $wire)?), $($arg),*); )*
                fields.finish()?;
                let model = Self { $( $field: $field.expect("every member was read when finish() succeeds"), )* };
                $( $after(&model, value, loc)?; )?
                Ok(model)
            }
        }

        $crate::model::macros::deserialize_by_model!($name);
    };
    (@class $name:ident) => { stringify!($name) };
    (@class $name:ident, $class:literal) => { $class };
    (@wire $field:ident) => { stringify!($field) };
    (@wire $field:ident, $wire:literal) => { $wire };
}

pub(crate) use model;

/// `serde::Deserialize` for a [`Model`](crate::model::Model): the JSON value, validated
/// by the model (so serde and `from_value` accept and refuse the same documents).
macro_rules! deserialize_by_model {
    ($name:ty) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
                <Self as $crate::model::Model>::from_value(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use deserialize_by_model;

/// Defines [`PayloadType`](crate::model::PayloadType), [`Payload`](crate::model::Payload)
/// and everything derived from the payload list (names, aliases, the response and
/// acked sets, schema paths, parsing by name) from one table, the invocation in
/// `payloads.rs`. Each entry names a payload model (the variant is called like the
/// model) and its wire facts:
///
/// ```text
/// TaskRequest { wire: "task.request", aliases: ["TaskRequest"], schema: "task_request",
///               response: false, acked: true },
/// ```
macro_rules! payload_types {
    ($(
        $model:ident {
            wire: $wire:literal,
            aliases: [$($alias:literal),* $(,)?],
            schema: $schema:literal,
            response: $response:literal,
            acked: $acked:literal $(,)?
        }
    ),+ $(,)?) => {
        /// Every payload model the protocol defines, by its `payload_type`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum PayloadType {
            $(
                #[doc = concat!("`", $wire, "` ([`", stringify!($model), "`])")]
                $model,
            )+
        }

        impl PayloadType {
            /// How many payload types there are.
            pub const COUNT: usize = [$(stringify!($model)),+].len();

            /// Every payload type, in the table's order.
            pub const ALL: [PayloadType; Self::COUNT] = [$(Self::$model),+];

            /// The canonical spelling to send and register under (`task.request`, ...).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$model => $wire,)+
                }
            }

            /// The other spellings found in the reference, accepted as aliases.
            pub const fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(Self::$model => &[$($alias),*],)+
                }
            }

            /// The name of its model, as the reference's class is called
            /// (`TaskRequest`, `McpToolResult`, ...).
            pub const fn model_name(self) -> &'static str {
                match self {
                    $(Self::$model => stringify!($model),)+
                }
            }

            /// Where [`all_schemas`](crate::model::schema::all_schemas) exports its
            /// model's schema (`payloads/task_request.schema.json`, ...).
            pub const fn schema_path(self) -> &'static str {
                match self {
                    $(Self::$model => concat!("payloads/", $schema, ".schema.json"),)+
                }
            }

            /// The JSON Schema of its model.
            pub fn schema(self) -> schemars::Schema {
                match self {
                    $(Self::$model => super::schema::schema_for::<$model>(),)+
                }
            }

            /// Whether this payload answers a request, so its envelope must carry a
            /// `correlation_id` when sent.
            pub const fn is_response(self) -> bool {
                match self {
                    $(Self::$model => $response,)+
                }
            }

            /// Whether the payload changes state, so the WebSocket client asks for an
            /// ack (`task.request`, `task.cancel`, `state.restore`, `message.send`).
            pub const fn is_state_changing(self) -> bool {
                match self {
                    $(Self::$model => $acked,)+
                }
            }

            /// Validates `value` as this type's model.
            pub fn validate(self, value: &Value) -> Result<Payload, ValidationError> {
                Ok(match self {
                    $(Self::$model => Payload::$model($model::from_value(value)?),)+
                })
            }
        }

        /// Any payload, typed.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Payload {
            $(
                #[doc = concat!("A [`", stringify!($model), "`].")]
                $model($model),
            )+
        }

        $(
            impl PayloadModel for $model {
                const TYPE: PayloadType = PayloadType::$model;
            }

            impl From<$model> for Payload {
                fn from(payload: $model) -> Self {
                    Payload::$model(payload)
                }
            }
        )+

        impl Payload {
            /// Its payload type.
            pub fn payload_type(&self) -> PayloadType {
                match self {
                    $(Payload::$model(_) => PayloadType::$model,)+
                }
            }

            /// The payload as a JSON value (member order kept).
            pub fn to_value(&self) -> Value {
                match self {
                    $(Payload::$model(p) => p.to_value(),)+
                }
            }

            /// Its model's `model_dump_json()` bytes.
            pub fn to_json(&self) -> String {
                match self {
                    $(Payload::$model(p) => p.to_json(),)+
                }
            }
        }
    };
}

pub(crate) use payload_types;
