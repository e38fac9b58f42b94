//! Identity (wire spec section 10): validating OAuth2 bearer JWTs against a JWKS, with
//! scopes and identity binding.
//!
//! Defaults accept exactly what the reference accepts (no `exp` required, `iss`, `aud`
//! and `nbf` not checked, scopes from `scope` only, no leeway); [`JwtPolicy::strict`]
//! turns on the checks a production deployment wants.

mod authorization_code;
mod introspection;
mod jwks;
mod jwt;
mod loopback;
mod oidc;
mod token;

pub use authorization_code::{AuthorizationCodeFlow, PendingAuthorization, RefreshingToken};
pub use introspection::{IntrospectionError, TokenInfo, TokenIntrospector};
pub use jwks::{JwksCache, JwksError};
#[cfg(feature = "fuzzing")]
pub(crate) use jwt::pick as pick_jwk;
pub use jwt::{
    AuthError, Claims, DEFAULT_CUSTOM_CLAIM, JwtPolicy, JwtValidator, SCOPE_ADMIN, SCOPE_EXECUTE,
    SCOPE_READ, parse_subject_map,
};
pub use loopback::{Callback, LoopbackRedirect};
pub use oidc::{OidcConfig, OidcDiscovery, OidcError};
pub use token::{AccessToken, ClientAuth, ClientCredentials, TokenError};
