//! `asap validate FILE...`

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use asap_protocol::json;
use asap_protocol::model::named::{MODEL_NAMES, validate_named};
use clap::Args;

/// Arguments of `asap validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files to check; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The model the documents must satisfy (`Envelope`, `Manifest`, `task_request`, ...).
    #[arg(long, default_value = "Envelope")]
    model: String,
}

/// Checks every file and prints one verdict per file; exit code 3 if any is invalid.
pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    if validate_named(&args.model, &serde_json::Value::Null).is_none() {
        return Err(super::invalid_input(format!(
            "unknown model {:?}; known models: {}",
            args.model,
            MODEL_NAMES.join(", ")
        )));
    }
    let mut all_valid = true;
    for file in &args.files {
        let label = if file.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            file.display().to_string()
        };
        match check(file, &args.model) {
            Ok(()) => crate::out!("{label}: ok"),
            Err(report) => {
                all_valid = false;
                crate::out!("{label}: {report}");
            }
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        crate::exit::Exit::InvalidInput.code()
    })
}

/// `Ok` or a readable report of what is wrong.
fn check(file: &PathBuf, model: &str) -> Result<(), String> {
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::read(file).map(|b| bytes = b)
    };
    read.map_err(|e| format!("cannot read: {e}"))?;
    let value = json::parse(&bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    match validate_named(model, &value) {
        Some(Ok(_)) => Ok(()),
        Some(Err(error)) => {
            let mut report = format!(
                "{} validation error{} for {}",
                error.errors.len(),
                if error.errors.len() == 1 { "" } else { "s" },
                error.title
            );
            for detail in &error.errors {
                let path: Vec<String> = detail.loc.iter().map(ToString::to_string).collect();
                let at = if path.is_empty() {
                    "(document)".to_owned()
                } else {
                    path.join(".")
                };
                report.push_str(&format!(
                    "\n  {at}: {} [type={}]",
                    detail.kind.message(),
                    detail.kind.type_name()
                ));
            }
            Err(report)
        }
        None => Err(format!("unknown model {model:?}")),
    }
}
