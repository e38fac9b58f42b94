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
        pub struct $name:ident $(check $after:path)? {
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
            const NAME: &'static str = stringify!($name);

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

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
                <Self as $crate::model::Model>::from_value(&value).map_err(serde::de::Error::custom)
            }
        }
    };
    (@wire $field:ident) => { stringify!($field) };
    (@wire $field:ident, $wire:literal) => { $wire };
}

pub(crate) use model;
