//! Identity (wire spec section 10): validating OAuth2 bearer JWTs against a JWKS, with
//! scopes and identity binding.
//!
//! Defaults accept exactly what the reference accepts (no `exp` required, `iss`, `aud`
//! and `nbf` not checked, scopes from `scope` only, no leeway); [`JwtPolicy::strict`]
//! turns on the checks a production deployment wants.

mod authorization_code;
mod document;
mod introspection;
mod jwks;
mod jwt;
#[cfg(feature = "server")]
mod loopback;
mod oidc;
mod subject_map;
mod token;

pub use authorization_code::{AuthorizationCodeFlow, PendingAuthorization, RefreshingToken};
pub use document::DocumentError;
pub use introspection::{IntrospectionError, TokenInfo, TokenIntrospector};
pub use jwks::{JwksCache, JwksError};
#[cfg(feature = "fuzzing")]
pub(crate) use jwt::pick as pick_jwk;
pub use jwt::{
    AuthError, Claims, DEFAULT_CUSTOM_CLAIM, JwtPolicy, JwtValidator, SCOPE_ADMIN, SCOPE_EXECUTE,
    SCOPE_READ, Unavailable,
};
#[cfg(feature = "server")]
pub use loopback::{Callback, LoopbackRedirect};
pub use oidc::{OidcConfig, OidcDiscovery, OidcError};
pub use subject_map::{SubjectMapError, parse_subject_map};
pub use token::{
    AccessToken, ClientAuth, ClientCredentials, DEFAULT_MAX_TOKEN_RESPONSE, RequestError,
    TokenError, TokenHttpError,
};
