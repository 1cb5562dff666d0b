//! The platform's sealing certificate: the key and chain that seal every
//! signed PDF and audit certificate ([`signhook_documents::seal`]).
//!
//! `--seal-cert FILE` names a PEM or PKCS#12 file (with
//! `--seal-cert-password`); without it, a self-signed certificate is made on
//! the first start and kept in the data directory (`seal.pem`, mode 0600),
//! then reused. Either way the file is read and checked once, at start: a
//! file that cannot seal stops the server with the reason, never a failed
//! signature later. What the PDF workers get is the key and chain as PEM, in
//! each job ([`crate::pdf::SealKey`]).
//!
//! Readers trust the seal as far as they trust its certificate: a
//! self-signed one shows every sealed file as intact but signed by someone
//! unknown. Each node of a cluster without `--seal-cert` makes its own.

use crate::pdf::SealKey;
use crate::ServerError;
use chrono::{DateTime, Utc};
use signhook_documents::Sealer;
use std::path::{Path, PathBuf};

/// The file in the data directory that keeps the self-signed seal.
pub const SEAL_FILE: &str = "seal.pem";

/// The common name of the self-signed certificate.
pub const SELF_SIGNED_NAME: &str = "Signhook seal (self-signed)";

/// `--seal-cert` and `--seal-cert-password`. `Debug` hides the password.
#[derive(Clone)]
pub struct SealCertFile {
    /// The PEM or PKCS#12 file.
    pub path: PathBuf,
    /// The PKCS#12 password; none is the empty password.
    pub password: Option<String>,
}

impl std::fmt::Debug for SealCertFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealCertFile")
            .field("path", &self.path)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// This node's seal, as the PDF workers get it: from `given`
/// (`--seal-cert`), or the self-signed one kept in `data_dir`, made there
/// (for `node_id`, valid from `now`) the first time. A certificate that has
/// expired by `now` is refused: what it sealed would show as signed with an
/// expired certificate.
pub fn resolve(
    given: Option<&SealCertFile>,
    data_dir: &Path,
    node_id: &str,
    now: DateTime<Utc>,
) -> Result<SealKey, ServerError> {
    let (sealer, path) = match given {
        Some(file) => {
            let bytes = std::fs::read(&file.path).map_err(|source| ServerError::SealCertUnreadable {
                path: file.path.clone(),
                source,
            })?;
            let sealer = Sealer::load(&bytes, file.password.as_deref()).map_err(|source| ServerError::SealCert {
                path: file.path.clone(),
                source,
            })?;
            (sealer, file.path.clone())
        }
        None => {
            let path = data_dir.join(SEAL_FILE);
            (load_or_create(&path, node_id, now)?, path)
        }
    };
    if sealer.not_after() <= now {
        return Err(ServerError::SealCertExpired {
            path,
            expired_at: sealer.not_after(),
        });
    }
    let days_left = (sealer.not_after() - now).num_days();
    if days_left < 30 {
        tracing::warn!(path = %path.display(), days_left, "the seal certificate expires soon: renew it and restart");
    }
    tracing::info!(
        path = %path.display(),
        subject = %sealer.subject(),
        self_signed = sealer.is_self_signed(),
        chain = sealer.chain_len(),
        not_after = %sealer.not_after(),
        "signed PDFs and audit certificates are sealed"
    );
    let unusable = |source| match given {
        Some(_) => ServerError::SealCert {
            path: path.clone(),
            source,
        },
        None => ServerError::MalformedSealFile {
            path: path.clone(),
            source,
        },
    };
    Ok(SealKey::from_pem(sealer.to_pem().map_err(unusable)?))
}

fn load_or_create(path: &Path, node_id: &str, now: DateTime<Utc>) -> Result<Sealer, ServerError> {
    let io_error = |source| ServerError::SealFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => Sealer::load(&bytes, None).map_err(|source| ServerError::MalformedSealFile {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let organization = format!("Signhook node {node_id}");
            let sealer = Sealer::self_signed(SELF_SIGNED_NAME, &organization, now).map_err(|source| {
                ServerError::MalformedSealFile {
                    path: path.to_owned(),
                    source,
                }
            })?;
            let pem = sealer.to_pem().map_err(|source| ServerError::MalformedSealFile {
                path: path.to_owned(),
                source,
            })?;
            let unique = format!(
                "{}-{}",
                std::process::id(),
                now.timestamp_nanos_opt().unwrap_or_default()
            );
            match crate::node::place(path, pem.as_bytes(), &unique) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "made a self-signed seal certificate for this data directory");
                    Ok(sealer)
                }
                // Another process made it first: its certificate is the one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path, node_id, now),
                Err(source) => Err(io_error(source)),
            }
        }
        Err(source) => Err(io_error(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_first_start_makes_a_private_self_signed_seal_that_later_starts_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = resolve(None, &data, "node-a", now()).unwrap().sealer().unwrap();
        assert_eq!(first.subject(), "CN=Signhook seal (self-signed),O=Signhook node node-a");
        assert!(first.is_self_signed());
        let file = data.join(SEAL_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = std::fs::read_to_string(&file).unwrap();
        let again = resolve(None, &data, "node-b", now()).unwrap().sealer().unwrap();
        assert_eq!(again.subject(), first.subject(), "the kept one, not a new one");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), pem);
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1, "no draft is left behind");
    }

    #[test]
    fn a_damaged_seal_file_stops_the_start_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SEAL_FILE), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let refused = resolve(None, dir.path(), "node-a", now()).unwrap_err();
        assert!(matches!(refused, ServerError::MalformedSealFile { .. }), "{refused:?}");
        assert!(refused.to_string().contains(SEAL_FILE), "{refused}");
    }

    #[test]
    fn a_given_file_wins_and_its_errors_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let pem = Sealer::self_signed("Ops", "Example", now()).unwrap().to_pem().unwrap();
        let path = dir.path().join("ops.pem");
        std::fs::write(&path, pem).unwrap();
        let given = SealCertFile {
            path: path.clone(),
            password: Some("unused".into()),
        };
        let sealer = resolve(Some(&given), dir.path(), "node-a", now())
            .unwrap()
            .sealer()
            .unwrap();
        assert_eq!(sealer.subject(), "CN=Ops,O=Example");
        assert!(!dir.path().join(SEAL_FILE).exists(), "no self-signed one is made");
        assert!(!format!("{given:?}").contains("unused"), "the password is not shown");

        let missing = SealCertFile {
            path: dir.path().join("missing.p12"),
            password: None,
        };
        let refused = resolve(Some(&missing), dir.path(), "node-a", now()).unwrap_err();
        assert!(refused.to_string().starts_with("cannot read --seal-cert"), "{refused}");
        std::fs::write(&path, "not a key").unwrap();
        let refused = resolve(Some(&given), dir.path(), "node-a", now()).unwrap_err();
        assert!(refused.to_string().starts_with("--seal-cert"), "{refused}");
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        resolve(None, dir.path(), "node-a", now()).unwrap();
        let later = now() + chrono::Duration::days(31 * 365);
        let refused = resolve(None, dir.path(), "node-a", later).unwrap_err();
        assert!(matches!(refused, ServerError::SealCertExpired { .. }), "{refused:?}");
    }
}
