//! `asap manifest sign|verify|info` and `asap keys generate`: signed manifests as the
//! 2.5.10 reference's `asap manifest` and `asap keys` make them (docs/asap-2.md
//! section 5). Keys and documents are exchangeable with the reference: private keys
//! are PKCS#8 PEM files, signed documents JSON files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use asap_protocol::model::{Manifest, Model, SignedManifest};
use asap_protocol::signing::{self, SigningKey, VerifyingKey};
use clap::{Args, Subcommand};

use super::invalid_input;

/// `asap manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestAction {
    /// Sign a manifest (JSON file, 1.1 or 2.x) with an Ed25519 key; prints the signed
    /// document (the manifest in the 2.x shape, signature, public key) or writes it.
    Sign(SignArgs),
    /// Verify a signed manifest's signature; prints `Signature valid (trust: LEVEL)`.
    Verify(VerifyArgs),
    /// Print a signed manifest's id, name, trust level and ASAP version.
    Info {
        /// The signed manifest (JSON file).
        file: PathBuf,
    },
}

/// Arguments of `asap manifest sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The Ed25519 private key (PKCS#8 PEM, as `asap keys generate` writes it).
    #[arg(long, short = 'k', value_name = "PEM")]
    key: PathBuf,
    /// The manifest (JSON file).
    file: PathBuf,
    /// Write the signed document here instead of printing it.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    /// Sign as an ASAP CA (trust level `verified`) instead of self-signed.
    #[arg(long)]
    ca: bool,
}

/// Arguments of `asap manifest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed manifest (JSON file).
    file: PathBuf,
    /// Verify with this key instead of the one the document carries: a file with a
    /// PKCS#8 PEM private key (its public half, as the reference takes), an SPKI PEM
    /// public key or the base64 raw public key.
    #[arg(long, short = 'k', value_name = "KEY", conflicts_with = "ca_key")]
    public_key: Option<PathBuf>,
    /// Verify as a CA signature: trust level `verified` and signed by one of these CA
    /// keys (files as for `--public-key`, or the base64 key itself).
    #[arg(long, value_name = "KEY")]
    ca_key: Vec<String>,
}

/// `asap keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Write a new Ed25519 private key as PKCS#8 PEM (file mode 0600) and print its
    /// base64 public key.
    Generate {
        /// The private key file to write.
        #[arg(long, short = 'o', value_name = "PEM")]
        out: PathBuf,
    },
}

/// Reads a PKCS#8 PEM private key file.
pub fn read_private_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    signing::private_key_from_pem(&text)
        .map_err(|e| invalid_input(format!("{}: {e}", path.display())))
}

/// A public key from a file (PEM or base64), or, when `text` names no file, the
/// base64 key itself.
pub fn read_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let path = Path::new(text);
    let contents = if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("reading {text}"))?
    } else {
        text.to_owned()
    };
    signing::read_verifying_key(&contents).map_err(|e| invalid_input(format!("{text}: {e}")))
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    asap_protocol::json::parse(&bytes)
        .map_err(|e| invalid_input(format!("{}: invalid JSON: {e}", path.display())))
}

fn read_signed(path: &Path) -> anyhow::Result<SignedManifest> {
    SignedManifest::from_value(&read_json(path)?).map_err(|e| {
        invalid_input(format!(
            "{}: invalid signed manifest format: {e}",
            path.display()
        ))
    })
}

/// Runs `asap manifest`.
pub fn run(action: ManifestAction) -> anyhow::Result<ExitCode> {
    match action {
        ManifestAction::Sign(args) => sign(&args),
        ManifestAction::Verify(args) => verify(&args),
        ManifestAction::Info { file } => {
            let signed = read_signed(&file)?;
            crate::out!("Manifest ID: {}", signed.manifest.id);
            crate::out!("Name: {}", signed.manifest.name);
            crate::out!("Trust level: {}", signed.signature.trust_level);
            crate::out!(
                "ASAP version: {}",
                signed.manifest.capabilities.asap_version
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let key = read_private_key(&args.key)?;
    let manifest = Manifest::from_wire(&read_json(&args.file)?)
        .map_err(|e| invalid_input(format!("{}: invalid manifest: {e}", args.file.display())))?;
    let signed = if args.ca {
        signing::sign_with_ca(&manifest, &key)
    } else {
        signing::sign_manifest(&manifest, &key)
    }
    .map_err(|e| invalid_input(e.to_string()))?;
    let text = serde_json::to_string_pretty(&signed.to_wire_value())
        .expect("a JSON value always serializes");
    match &args.out {
        Some(out) => {
            std::fs::write(out, format!("{text}\n"))
                .with_context(|| format!("writing {}", out.display()))?;
            crate::out!("Signed manifest written to {}", out.display());
        }
        None => crate::out!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let signed = read_signed(&args.file)?;
    let checked = if args.ca_key.is_empty() {
        let key = match &args.public_key {
            Some(path) => Some(read_public_key(&path.to_string_lossy())?),
            None => None,
        };
        signing::verify_manifest(&signed, key.as_ref())
    } else {
        let cas = args
            .ca_key
            .iter()
            .map(|k| read_public_key(k))
            .collect::<anyhow::Result<Vec<_>>>()?;
        signing::verify_ca_signature(&signed, &cas)
    };
    checked.map_err(|e| invalid_input(format!("Verification failed: {e}")))?;
    crate::out!(
        "Signature valid (trust: {}): {}",
        signed.signature.trust_level,
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `asap keys`.
pub fn keys(action: KeysAction) -> anyhow::Result<ExitCode> {
    let KeysAction::Generate { out } = action;
    if out.is_dir() {
        return Err(invalid_input(format!(
            "output path is a directory: {}",
            out.display()
        )));
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = signing::generate_key();
    write_private(&out, signing::private_key_to_pem(&key).as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    crate::out!("Private key written to {}", out.display());
    crate::out!(
        "Public key: {}",
        signing::public_key_to_base64(&key.verifying_key())
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a file readable by its owner only (0600 on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}
