//! `perimeter init`: creates the data directory and the audit keys (idempotent). Prints the
//! paths and the public key, never a secret.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use perimeter_store::audit_file::{self, AuditLog};

#[derive(Args)]
pub struct InitArgs {
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(data_dir: &Path, args: InitArgs) -> Result<i32> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("could not create {}", data_dir.display()))?;
    let init = AuditLog::keys_init(data_dir)?;
    let public_pem = perimeter_audit::public_key_pem(&init.keys.public_key())?;
    let public_path = init.dir.join(audit_file::PUBLIC_KEY_FILE);
    if args.json {
        let doc = serde_json::json!({
            "data_dir": data_dir,
            "audit_dir": init.dir,
            "created": init.created,
            "public_key_file": public_path,
            "public_key": public_pem,
            "key_id": init.keys.key_id(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let verb = if init.created { "created" } else { "already initialised" };
        println!("{}: {verb}", data_dir.display());
        println!("audit log:      {}", init.dir.join(audit_file::LOG_FILE).display());
        println!("signing key:    {} (secret, mode 0600)", init.dir.join(audit_file::SIGNING_KEY_FILE).display());
        println!("query HMAC key: {} (secret, mode 0600)", init.dir.join(audit_file::HMAC_KEY_FILE).display());
        println!("public key:     {} (key id {})", public_path.display(), init.keys.key_id());
        print!("{public_pem}");
        println!("Keep a copy of the public key away from this machine: `perimeter audit verify --public-key` checks the log against it.");
    }
    Ok(0)
}
