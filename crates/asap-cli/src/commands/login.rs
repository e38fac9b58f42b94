//! `asap login`: the OAuth2 authorization-code flow with PKCE for a person at a terminal.
//!
//! Nothing is opened automatically: the authorization URL is printed, the provider's
//! redirect is received on a loopback port, and the code is exchanged for tokens.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use asap_protocol::auth::{
    AccessToken, AuthorizationCodeFlow, ClientAuth, LoopbackRedirect, OidcDiscovery,
};
use clap::Args;

/// Arguments of `asap login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The provider's issuer; its endpoints come from OIDC discovery.
    #[arg(long, env = "ASAP_AUTH_ISSUER", required_unless_present_all = ["authorize_url", "token_url"])]
    issuer: Option<String>,
    /// The authorization endpoint (instead of discovery).
    #[arg(long)]
    authorize_url: Option<String>,
    /// The token endpoint (instead of discovery).
    #[arg(long, env = "ASAP_OAUTH2_TOKEN_URL")]
    token_url: Option<String>,
    /// The client id registered at the provider for this tool.
    #[arg(long, env = "ASAP_OAUTH2_CLIENT_ID")]
    client_id: String,
    /// The client secret, for a confidential client (public clients rely on PKCE alone).
    #[arg(long, env = "ASAP_OAUTH2_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Send the client secret in the form body (`client_secret_post`) instead of HTTP Basic.
    #[arg(long)]
    client_secret_post: bool,
    /// Scopes to ask for (repeatable, or space-separated).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The loopback port of the redirect URI `http://127.0.0.1:PORT/callback` (0: any free port;
    /// providers that require an exact redirect URI need a fixed one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seconds to wait for the sign-in to finish.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Skip the browser: use this saved refresh token to get a new access token.
    #[arg(long, hide_env_values = true, env = "ASAP_OAUTH2_REFRESH_TOKEN")]
    refresh_token: Option<String>,
    /// Print the token set as JSON (access token, type, lifetime, refresh token).
    #[arg(long)]
    json: bool,
}

/// The provider's authorization and token endpoints, given or discovered.
async fn endpoints(args: &LoginArgs) -> anyhow::Result<(String, String)> {
    if let (Some(authorize), Some(token)) = (&args.authorize_url, &args.token_url) {
        return Ok((authorize.clone(), token.clone()));
    }
    let issuer = args
        .issuer
        .as_deref()
        .context("--issuer, or --authorize-url and --token-url, are required")?;
    let config = OidcDiscovery::new(issuer)?
        .config()
        .await
        .context("finding the provider's endpoints")?;
    let authorize = match &args.authorize_url {
        Some(url) => url.clone(),
        None => config
            .authorization_endpoint
            .context("the provider's discovery document has no authorization_endpoint")?,
    };
    Ok((
        authorize,
        args.token_url.clone().unwrap_or(config.token_endpoint),
    ))
}

fn print(token: &AccessToken, json: bool) -> std::io::Result<()> {
    if !json {
        crate::out!("{}", token.secret);
        return Ok(());
    }
    let expires_in = token
        .expires_at
        .saturating_duration_since(Instant::now())
        .as_secs();
    let set = serde_json::json!({
        "access_token": token.secret,
        "token_type": token.token_type,
        "expires_in": expires_in,
        "refresh_token": token.refresh_token,
    });
    crate::out!("{set}");
    Ok(())
}

/// Runs `asap login`.
pub fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    super::remote::runtime()?.block_on(async {
        let (authorize_url, token_url) = endpoints(&args).await?;
        let mut flow = AuthorizationCodeFlow::new(authorize_url, token_url, &args.client_id)?
            .scopes(args.scopes.iter().flat_map(|s| s.split_whitespace()));
        if let Some(secret) = args.client_secret.as_ref().filter(|s| !s.is_empty()) {
            flow = flow
                .client_secret(secret)
                .client_auth(if args.client_secret_post {
                    ClientAuth::Post
                } else {
                    ClientAuth::Basic
                });
        }
        let tokens = match &args.refresh_token {
            Some(refresh_token) => flow.from_refresh_token(refresh_token),
            None => {
                let redirect = LoopbackRedirect::bind(args.port).await?;
                eprintln!(
                    "asap: waiting for the sign-in at {}",
                    redirect.redirect_uri()
                );
                flow.login(
                    redirect,
                    |url| eprintln!("Open this URL in a browser to sign in:\n\n  {url}\n"),
                    Duration::from_secs(args.timeout),
                )
                .await?
            }
        };
        let token = tokens.token().await?;
        print(&token, args.json)?;
        Ok(ExitCode::SUCCESS)
    })
}
