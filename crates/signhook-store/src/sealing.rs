//! Secrets at rest (DESIGN §5): webhook secrets, previous secrets, custom
//! header values and the link key are sealed in the database with
//! ChaCha20-Poly1305 under a master key kept outside it, in a key file.
//! Whoever reads the database file (or a backup of it) without the key file
//! learns no secret and can forge no link.
//!
//! A sealed value is text: `enc:v1:{key id}:{base64(nonce ‖ ciphertext ‖
//! tag)}`. The associated data names the column and the row
//! (`subscriptions.secret/wh_…`), so a sealed value moved to another row or
//! column does not open. A value without the `enc:` prefix is plaintext from
//! before sealing; [`Store::reseal`](crate::Store::reseal) seals it at start.
//!
//! The key file holds one or more keys, one per line (`{id} {base64}`), the
//! first of which seals; every key in it opens. Rotation puts a new key
//! first, reseals every value with it, then drops the old ones.

use crate::db::{DbRow, Sql};
use crate::{Result, Store, StoreError};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use signhook_core::ids::SubscriptionId;
use std::io::Write;
use std::path::Path;

const PREFIX: &str = "enc:v1:";
const KEY_LEN: usize = 32;

/// Why a key file or a sealed value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    /// The key file could not be read or written.
    #[error("master key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the key file is not `{id} {base64 of 32 bytes}`.
    #[error("master key file {path}, line {line}: expected `<key id> <base64 of 32 bytes>`")]
    Malformed {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
    },
    /// A value was sealed with a key this key file does not hold.
    #[error(
        "{what} is sealed with master key `{key_id}`, which the master key file does not hold; \
         use the key file this database was sealed with (every node needs the same one)"
    )]
    UnknownKey {
        /// The column and row.
        what: String,
        /// The key it names.
        key_id: String,
    },
    /// A sealed value does not open: altered, truncated or moved.
    #[error("{what} does not open with its master key: it was altered or moved")]
    Tampered {
        /// The column and row.
        what: String,
    },
}

/// One master key.
struct MasterKey {
    id: String,
    key: LessSafeKey,
    /// The raw bytes, to write the key file.
    bytes: [u8; KEY_LEN],
}

impl MasterKey {
    fn new(id: String, bytes: [u8; KEY_LEN]) -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("32 bytes is a ChaCha20 key"));
        Self { id, key, bytes }
    }

    fn generate() -> Self {
        let id = format!("mk_{:016x}", rand::random::<u64>());
        Self::new(id, rand::random())
    }
}

/// The master keys: the first seals, all open.
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// A keyring of one fresh key (a new key file's, or a test's).
    pub fn generate() -> Self {
        Self {
            keys: vec![MasterKey::generate()],
        }
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Reads the key file at `path`, or creates it (mode 0600) with one
    /// fresh key if there is none. Two processes starting at once agree on
    /// one file: it appears whole, and only once.
    pub fn load_or_create(path: &Path) -> std::result::Result<Self, SealingError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keyring = Self::generate();
                let draft = path.with_extension(format!("new-{:08x}", rand::random::<u32>()));
                keyring.save(&draft)?;
                let placed = std::fs::hard_link(&draft, path);
                let _ = std::fs::remove_file(&draft);
                match placed {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), key_id = keyring.current_id(), "created a master key file; back it up");
                        Ok(keyring)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
                    Err(source) => Err(file_error(path, source)),
                }
            }
            Err(source) => Err(file_error(path, source)),
        }
    }

    fn parse(path: &Path, text: &str) -> std::result::Result<Self, SealingError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || SealingError::Malformed {
                path: path.display().to_string(),
                line: i + 1,
            };
            let (id, key) = line.split_once(' ').ok_or_else(malformed)?;
            let bytes: [u8; KEY_LEN] = STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(malformed)?;
            if id.is_empty() || id.contains(':') {
                return Err(malformed());
            }
            keys.push(MasterKey::new(id.to_owned(), bytes));
        }
        if keys.is_empty() {
            return Err(SealingError::Malformed {
                path: path.display().to_string(),
                line: 1,
            });
        }
        Ok(Self { keys })
    }

    /// Writes the keyring to `path` atomically, readable by this user only.
    pub fn save(&self, path: &Path) -> std::result::Result<(), SealingError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut text = String::from(
            "# Signhook master keys. Keep this file secret and backed up: without it the\n\
             # webhook secrets and the link key in the database cannot be read. Every node\n\
             # of a cluster needs the same file. The first key seals; every key opens.\n",
        );
        for key in &self.keys {
            text.push_str(&format!("{} {}\n", key.id, STANDARD.encode(key.bytes)));
        }
        // A name of its own: two processes saving at once never write
        // into each other's file.
        let temporary = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        };
        write().map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            file_error(path, source)
        })
    }

    /// This keyring with a fresh key in front: it seals from now on, the
    /// others still open.
    pub fn with_new_key(self) -> Self {
        let mut keys = vec![MasterKey::generate()];
        keys.extend(self.keys);
        Self { keys }
    }

    /// This keyring with only the key that seals.
    pub fn without_old_keys(mut self) -> Self {
        self.keys.truncate(1);
        self
    }

    /// Seals `plaintext` for the place `what` (column and row) names.
    pub fn seal(&self, what: &str, plaintext: &[u8]) -> String {
        let key = &self.keys[0];
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = plaintext.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(what.as_bytes()),
                &mut sealed,
            )
            .expect("sealing fits in memory");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext of `stored` at `what`: opened if sealed, as it is if it
    /// is plaintext from before sealing.
    pub fn open(&self, what: &str, stored: &str) -> std::result::Result<Vec<u8>, SealingError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.as_bytes().to_vec());
        };
        let tampered = || SealingError::Tampered { what: what.to_owned() };
        let (id, data) = rest.split_once(':').ok_or_else(tampered)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealingError::UnknownKey {
                what: what.to_owned(),
                key_id: id.to_owned(),
            })?;
        let data = URL_SAFE_NO_PAD.decode(data).map_err(|_| tampered())?;
        if data.len() < NONCE_LEN {
            return Err(tampered());
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| tampered())?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(what.as_bytes()), &mut sealed)
            .map_err(|_| tampered())?;
        Ok(plain.to_vec())
    }

    /// [`Keyring::open`], for a value that was text.
    pub fn open_text(&self, what: &str, stored: &str) -> std::result::Result<String, SealingError> {
        String::from_utf8(self.open(what, stored)?).map_err(|_| SealingError::Tampered { what: what.to_owned() })
    }

    /// Whether `stored` is sealed with the key that seals now (else it is
    /// plaintext, or sealed with an older key, and should be resealed).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current_id())
    }
}

/// Where the link key is, as its associated data.
pub(crate) const LINK_KEY_AT: &str = "link_keys.secret/1";

/// The link key from its stored bytes: sealed text, or the raw key of a
/// database from before sealing.
pub(crate) fn open_link_key(keys: &Keyring, stored: &[u8]) -> Result<Vec<u8>> {
    match std::str::from_utf8(stored) {
        Ok(text) if text.starts_with(PREFIX) => Ok(keys.open(LINK_KEY_AT, text)?),
        _ => Ok(stored.to_vec()),
    }
}

impl Store {
    /// Seals with the current master key every secret that is not: the
    /// plaintext of a database from before sealing (at start), or what an
    /// older key sealed (after a rotation). One transaction; returns how
    /// many values were resealed. Fails, changing nothing, if a value was
    /// sealed with a key the keyring does not hold.
    ///
    /// On SQLite, when plaintext was sealed, the database is then rewritten
    /// (`VACUUM`, and the log truncated), so that the plaintext does not
    /// linger in free pages or in the write-ahead log.
    pub async fn reseal(&self) -> Result<usize> {
        let keys = &self.keys;
        let mut tx = self.begin().await?;
        let mut resealed = 0;
        let mut plaintext = 0;
        let rows = tx
            .fetch_all(Sql::new(
                "SELECT id, secret, previous_secret, headers FROM subscriptions",
            ))
            .await?;
        for row in &rows {
            let id = SubscriptionId::parse(&row.text("id")?).map_err(StoreError::corrupt)?;
            let secret = row.text("secret")?;
            let previous = row.opt_text("previous_secret")?;
            let headers = row.text("headers")?;
            let values = [Some(&secret), previous.as_ref(), Some(&headers)];
            let stale = values.iter().flatten().filter(|value| !keys.is_current(value)).count();
            plaintext += values
                .iter()
                .flatten()
                .filter(|value| !value.starts_with(PREFIX))
                .count();
            if stale == 0 {
                continue;
            }
            let reseal = |column: &str, stored: &str| -> Result<String> {
                let at = sealed_at(column, &id);
                Ok(keys.seal(&at, &keys.open(&at, stored)?))
            };
            tx.gather(
                Sql::new("UPDATE subscriptions SET secret = $1, previous_secret = $2, headers = $3 WHERE id = $4")
                    .bind(reseal("secret", &secret)?)
                    .bind(previous.map(|p| reseal("previous_secret", &p)).transpose()?)
                    .bind(reseal("headers", &headers)?)
                    .bind(&id),
            )
            .await?;
            resealed += stale;
        }
        let link_key = tx
            .fetch_optional(Sql::new("SELECT secret FROM link_keys WHERE id = 1"))
            .await?;
        if let Some(row) = link_key {
            let stored = row.opt_bytes("secret")?.unwrap_or_default();
            let text = std::str::from_utf8(&stored).ok();
            if !text.is_some_and(|text| text.starts_with(PREFIX)) {
                plaintext += 1;
            }
            if !text.is_some_and(|text| keys.is_current(text)) {
                let sealed = keys.seal(LINK_KEY_AT, &open_link_key(keys, &stored)?);
                tx.gather(Sql::new("UPDATE link_keys SET secret = $1 WHERE id = 1").bind(sealed.into_bytes()))
                    .await?;
                resealed += 1;
            }
        }
        tx.commit().await?;
        if plaintext > 0 {
            if let crate::Backend::Sqlite { writer, .. } = &self.backend {
                writer
                    .with_connection(async |conn| {
                        sqlx::query("VACUUM").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                    .await?;
            }
        }
        Ok(resealed)
    }
}

/// Where a sealed column of a subscription is, as its associated data.
pub(crate) fn sealed_at(column: &str, id: &SubscriptionId) -> String {
    format!("subscriptions.{column}/{id}")
}

fn file_error(path: &Path, source: std::io::Error) -> SealingError {
    SealingError::File {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed() {
        let keys = Keyring::generate();
        let sealed = keys.seal("subscriptions.secret/wh_1", b"whsec_abc");
        assert!(sealed.starts_with(&format!("enc:v1:{}:", keys.current_id())));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(keys.open("subscriptions.secret/wh_1", &sealed).unwrap(), b"whsec_abc");
        // Moved to another row or column, altered, or under another key.
        assert!(matches!(
            keys.open("subscriptions.secret/wh_2", &sealed),
            Err(SealingError::Tampered { .. })
        ));
        // One character of the ciphertext changed (not the last, whose
        // low bits base64 may ignore).
        let at = sealed.len() - 5;
        let flipped = if &sealed[at..=at] == "A" { "B" } else { "A" };
        let altered = format!("{}{flipped}{}", &sealed[..at], &sealed[at + 1..]);
        assert!(keys.open("subscriptions.secret/wh_1", &altered).is_err());
        assert!(matches!(
            Keyring::generate().open("subscriptions.secret/wh_1", &sealed),
            Err(SealingError::UnknownKey { .. })
        ));
        // Two seals of one value differ (fresh nonces).
        assert_ne!(keys.seal("x", b"same"), keys.seal("x", b"same"));
        // Plaintext from before sealing passes through, and is not current.
        assert_eq!(keys.open("x", "whsec_old").unwrap(), b"whsec_old");
        assert!(!keys.is_current("whsec_old"));
        assert!(keys.is_current(&sealed));
    }

    #[test]
    fn the_key_file_is_private_round_trips_and_rotates() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let created = Keyring::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = created.seal("w", b"secret");
        let loaded = Keyring::load_or_create(&path).unwrap();
        assert_eq!(loaded.current_id(), created.current_id());
        assert_eq!(loaded.open("w", &sealed).unwrap(), b"secret");
        // A new key seals; the old one still opens until it is dropped.
        let rotated = loaded.with_new_key();
        assert_ne!(rotated.current_id(), created.current_id());
        assert!(!rotated.is_current(&sealed));
        assert_eq!(rotated.open("w", &sealed).unwrap(), b"secret");
        let resealed = rotated.seal("w", b"secret");
        let only_new = rotated.without_old_keys();
        assert!(only_new.open("w", &sealed).is_err());
        assert_eq!(only_new.open("w", &resealed).unwrap(), b"secret");
        // A damaged file is refused with its line.
        std::fs::write(&path, "# keys\nmk_1 not-base64\n").unwrap();
        let err = Keyring::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
