//! The exit codes of `asap`, in one place: each failure is classified from the error
//! chain, so a command only has to return its error.

use std::process::ExitCode;

use asap_protocol::client::ClientError;
use asap_protocol::discovery::RegistryError;
use asap_protocol::webhook::WebhookError;

/// How an `asap` command ended; [`Exit::meaning`] says what each code means (the
/// documentation's table is generated from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    InvalidInput = 3,
    Unreachable = 4,
    PeerError = 5,
    BrokenPipe = 141,
}

impl Exit {
    /// Every code, for the documentation.
    pub const ALL: [Exit; 7] = [
        Exit::Success,
        Exit::Failure,
        Exit::Usage,
        Exit::InvalidInput,
        Exit::Unreachable,
        Exit::PeerError,
        Exit::BrokenPipe,
    ];

    /// What the code means (for `--help` readers and `docs/configuration.md`).
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "It did what was asked.",
            Exit::Failure => {
                "Nothing found (`asap registry search`, as grep), or a failure not listed below (cannot listen, storage, file system, an identity provider's refusal)."
            }
            Exit::Usage => {
                "The command line is wrong (unknown option, missing or malformed value); clap prints the usage."
            }
            Exit::InvalidInput => {
                "Input you gave is invalid: a document that is not JSON or fails the wire model (`asap validate` finding one), a malformed option value or file, a webhook URL the SSRF policy refuses, a signature that does not match (`asap webhook verify`)."
            }
            Exit::Unreachable => {
                "No usable connection to the peer (or a registry): refused, DNS, TLS, timeout, no acknowledgement, a registry file that cannot be read."
            }
            Exit::PeerError => {
                "The peer answered with an error: a JSON-RPC error, an HTTP error status, an unhealthy health document, or an answer that is not valid ASAP."
            }
            Exit::BrokenPipe => {
                "Standard output was closed early (`asap ... | head`): the command stops quietly."
            }
        }
    }

    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// The exit a client error ends a command with.
pub fn of_client_error(error: &ClientError) -> Exit {
    match error {
        ClientError::Remote { .. }
        | ClientError::Http { .. }
        | ClientError::InvalidResponse(_)
        | ClientError::Incompatible { .. }
        | ClientError::ResponseTooLarge { .. } => Exit::PeerError,
        // TLS errors come from the client's own settings (a malformed --ca-cert); a
        // failed handshake is a transport error.
        ClientError::InvalidRequest(_) | ClientError::NoToken(_) | ClientError::Tls(_) => {
            Exit::InvalidInput
        }
        _ => Exit::Unreachable,
    }
}

/// The exit for a failed command: the first error in the chain that says.
pub fn of_error(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return Exit::BrokenPipe;
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return of_client_error(client);
        }
        if let Some(registry) = cause.downcast_ref::<RegistryError>() {
            return match registry {
                RegistryError::Fetch { .. } => Exit::Unreachable,
                _ => Exit::PeerError,
            };
        }
        if let Some(webhook) = cause.downcast_ref::<WebhookError>() {
            return match webhook {
                WebhookError::Blocked(_) | WebhookError::NotFound(_) => Exit::InvalidInput,
                _ => Exit::Failure,
            };
        }
        if cause.is::<crate::commands::InvalidInput>()
            || cause.is::<asap_protocol::model::DecodeError>()
            || cause.is::<asap_protocol::model::ValidationError>()
            || cause.is::<serde_json::Error>()
            || cause.is::<asap_protocol::server::TlsError>()
            || cause.is::<asap_protocol::server::RateLimitError>()
            || cause.is::<asap_protocol::server::TrustedProxyError>()
            || cause.is::<asap_protocol::server::ConfigError>()
        {
            return Exit::InvalidInput;
        }
    }
    Exit::Failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<u8> = Exit::ALL.iter().map(|e| *e as u8).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Exit::ALL.len());
    }

    #[test]
    fn errors_are_classified_through_their_context() {
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing");
        assert_eq!(of_error(&pipe), Exit::BrokenPipe);
        let remote = anyhow::Error::from(ClientError::Http {
            status: reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            body: String::new(),
        })
        .context("sending");
        assert_eq!(of_error(&remote), Exit::PeerError);
        let timeout = anyhow::Error::from(ClientError::Timeout(std::time::Duration::from_secs(1)));
        assert_eq!(of_error(&timeout), Exit::Unreachable);
        let bad = crate::commands::invalid_input("nope");
        assert_eq!(of_error(&bad), Exit::InvalidInput);
        assert_eq!(of_error(&anyhow::anyhow!("disk full")), Exit::Failure);
    }

    #[test]
    fn typed_client_errors_keep_their_exit_codes() {
        use asap_protocol::client::{RequestError, ResponseError, TlsError, WebSocketError};
        let cases = [
            (
                ClientError::from(RequestError::InsecureTransport {
                    url: "http://example.com".into(),
                }),
                Exit::InvalidInput,
            ),
            (
                ClientError::from(TlsError::NoCertificate),
                Exit::InvalidInput,
            ),
            (
                ClientError::from(ResponseError::MissingEnvelope),
                Exit::PeerError,
            ),
            (
                ClientError::Incompatible {
                    agent: "urn:asap:agent:x".into(),
                    asap_version: "2.0".into(),
                },
                Exit::PeerError,
            ),
            (ClientError::from(WebSocketError::Closed), Exit::Unreachable),
        ];
        for (error, exit) in cases {
            assert_eq!(of_client_error(&error), exit, "{error}");
        }
    }
}
