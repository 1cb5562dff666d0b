//! Where the files of a signature request live: uploaded documents, signed
//! PDFs and audit certificates.
//!
//! The database holds the records; the bytes live here, in a [`BlobStore`]:
//! a local directory by default (`<data-dir>/blobs`), or an S3 bucket (AWS
//! or any S3-compatible server: MinIO, Ceph, R2…) when several nodes serve
//! the same data and must all see every file (DESIGN: `--blob-url`).
//!
//! # Why `object_store`
//!
//! [`object_store`] gives one API over both places, so the rest of Signhook
//! reads and writes blobs without knowing where they are, and a test of the
//! local directory exercises the same calls as production on S3. It also
//! gives both the guarantee a document store needs: a `put` is atomic — a
//! reader sees the old object, the new one, or none, never half a PDF. On
//! disk it writes to a temporary file and renames it into place; on S3 a
//! single PUT is atomic. It is also far lighter than the AWS SDK, and reads
//! its settings from the usual `AWS_*` variables.
//!
//! # Keys
//!
//! Keys are `/`-separated paths built from ids, all files of one signature
//! request under its id, so that deleting the request deletes one prefix:
//!
//! ```text
//! sr_0193…/documents/doc_0193….pdf
//! sr_0193…/signed.pdf
//! sr_0193…/audit_certificate.pdf
//! ```
//!
//! A key is made of ASCII letters, digits, `-`, `_` and `.`, in non-empty
//! segments that are not `.` or `..`. Nothing else is needed for ids, and a
//! small alphabet means a key names the same file on disk and in a bucket
//! (no percent-encoding, no `..` escaping the directory). A key outside it
//! is a bug in the caller and fails with [`BlobError::InvalidKey`].

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory inside the data directory that holds the blobs when no
/// `--blob-url` is given.
pub const LOCAL_DIR: &str = "blobs";

/// What went wrong with a blob.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The blob location cannot be used: `--blob-url` not understood (a
    /// scheme other than `file` or `s3`, no bucket, a relative path…) or an
    /// S3 option unknown or invalid.
    #[error("invalid blob URL: {0}")]
    InvalidUrl(String),
    /// A key breaks the rules of the [module docs](self): a bug in the
    /// caller, since keys are built from ids.
    #[error("invalid blob key {0}")]
    InvalidKey(String),
    /// The object does not exist (the key is given).
    #[error("blob not found: {0}")]
    NotFound(String),
    /// The storage failed otherwise: I/O, permissions, the network, an error
    /// answered by S3. The source says which.
    #[error("blob storage failed")]
    Storage(#[source] object_store::Error),
}

/// The files of signature requests, on a local directory or an S3 bucket.
///
/// Cheap to clone: clones share one client (and its connection pool).
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// Prepended to every key: the path part of an `s3://bucket/prefix`
    /// URL, so that several deployments can share one bucket.
    prefix: ObjectPath,
    /// Where the blobs are, for the startup log.
    description: String,
}

impl fmt::Debug for BlobStore {
    // Only the location, which is what a reader of logs needs: the
    // client's own Debug is a page of settings, endpoint and key id included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("location", &self.description)
            .finish()
    }
}

impl BlobStore {
    /// Opens the blob store that `--blob-url` names:
    ///
    /// - `None`: the directory `blobs` in `data_dir`, created if missing;
    /// - `file:///absolute/dir` (the path is taken as written, without
    ///   percent-decoding): that directory, created if missing;
    /// - `s3://bucket` or `s3://bucket/prefix`: that bucket, keys under the
    ///   prefix, configured from the environment like the AWS tools:
    ///   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
    ///   `AWS_SESSION_TOKEN`), `AWS_REGION` or `AWS_DEFAULT_REGION`, and for
    ///   S3-compatible servers `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`) and
    ///   `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint. Without keys in
    ///   the environment, the instance's or container's role is used.
    ///
    /// Opening an S3 store does no I/O: a wrong endpoint or credential
    /// shows on the first [`put`](Self::put) or [`get`](Self::get).
    pub fn open(url: Option<&str>, data_dir: &Path) -> Result<Self, BlobError> {
        let Some(url) = url else {
            return Self::local(&data_dir.join(LOCAL_DIR));
        };
        match parse_url(url)? {
            Location::Directory(dir) => Self::local(&dir),
            Location::S3 { bucket, prefix } => Self::build_s3(AmazonS3Builder::from_env(), bucket, prefix),
        }
    }

    /// Opens the S3 bucket of `bucket_url` (`s3://bucket[/prefix]`) with
    /// explicit settings instead of the environment — for tests, which run in
    /// parallel threads and so cannot set process-wide variables.
    ///
    /// `options` are `object_store`'s names for the variables [`open`]
    /// reads, in lower case: `aws_endpoint`, `aws_allow_http`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`… (see
    /// [`AmazonS3ConfigKey`]). An unknown name is an
    /// [`InvalidUrl`](BlobError::InvalidUrl).
    ///
    /// [`open`]: Self::open
    pub fn s3<K, V>(bucket_url: &str, options: impl IntoIterator<Item = (K, V)>) -> Result<Self, BlobError>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let Location::S3 { bucket, prefix } = parse_url(bucket_url)? else {
            return Err(BlobError::InvalidUrl(format!(
                "{bucket_url}: expected s3://bucket[/prefix]"
            )));
        };
        let mut builder = AmazonS3Builder::new();
        for (key, value) in options {
            let key = key.as_ref();
            let config_key: AmazonS3ConfigKey = key
                .parse()
                .map_err(|_| BlobError::InvalidUrl(format!("unknown S3 option {key:?}")))?;
            builder = builder.with_config(config_key, value);
        }
        Self::build_s3(builder, bucket, prefix)
    }

    /// A store on the local directory `dir`, created if missing, readable
    /// by this user only (0700).
    fn local(dir: &Path) -> Result<Self, BlobError> {
        crate::private_dir(dir).map_err(|source| {
            BlobError::Storage(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!("cannot create {}: {source}", dir.display()).into(),
            })
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(BlobError::Storage)?
            // Deleting a request's last file removes its now-empty
            // directories, so deleted requests leave nothing behind.
            .with_automatic_cleanup(true);
        Ok(BlobStore {
            store: Arc::new(store),
            prefix: ObjectPath::default(),
            description: format!("local directory {}", dir.display()),
        })
    }

    fn build_s3(builder: AmazonS3Builder, bucket: String, prefix: ObjectPath) -> Result<Self, BlobError> {
        let store = builder
            .with_bucket_name(&bucket)
            .build()
            .map_err(|e| BlobError::InvalidUrl(format!("s3://{bucket}: {e}")))?;
        let description = if prefix.is_root() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(BlobStore {
            store: Arc::new(store),
            prefix,
            description,
        })
    }

    /// Stores `bytes` at `key`, replacing any previous object. Atomic: a
    /// concurrent reader sees the old object or the new one, never a part.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        let location = self.location(key)?;
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(BlobError::Storage)?;
        Ok(())
    }

    /// Reads the object at `key`; [`BlobError::NotFound`] when there is none.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let location = self.location(key)?;
        let not_found = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound(key.to_owned()),
            e => BlobError::Storage(e),
        };
        let bytes = self
            .store
            .get(&location)
            .await
            .map_err(not_found)?
            .bytes()
            .await
            .map_err(not_found)?;
        Ok(bytes.into())
    }

    /// Deletes every object under `prefix` (for example `"sr_0193…/"`, with
    /// or without the final `/`) and returns how many it deleted: what
    /// permanently deleting a signature request does to its files.
    ///
    /// Prefixes match whole segments: `sr_1` covers `sr_1/signed.pdf`, not
    /// `sr_12/signed.pdf`. Objects that vanish meanwhile (another node
    /// deleting the same request) are skipped, not counted. Not atomic: on
    /// an error some objects may be gone already, and calling it again
    /// finishes the job.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, BlobError> {
        let root = self.location(prefix.strip_suffix('/').unwrap_or(prefix))?;
        let mut deleted = 0;
        // Walked one level at a time with `list_with_delimiter`, the only
        // listing that is a plain future rather than a stream.
        let mut pending = vec![root];
        while let Some(dir) = pending.pop() {
            let listing = self
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(BlobError::Storage)?;
            for object in listing.objects {
                match self.store.delete(&object.location).await {
                    Ok(()) => deleted += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(BlobError::Storage(e)),
                }
            }
            pending.extend(listing.common_prefixes);
        }
        Ok(deleted)
    }

    /// Where the blobs are, for the startup log: `local directory /x/blobs`
    /// or `s3://bucket/prefix`. Holds no secret.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The object path of `key`: the store's prefix, then the key's
    /// segments.
    fn location(&self, key: &str) -> Result<ObjectPath, BlobError> {
        let segments = key_segments(key).map_err(|why| BlobError::InvalidKey(format!("{key:?}: {why}")))?;
        Ok(self.prefix.parts().chain(segments.map(PathPart::from)).collect())
    }
}

/// The segments of `key`, if it keeps the rules of the module docs.
fn key_segments(key: &str) -> Result<std::str::Split<'_, char>, &'static str> {
    if key.is_empty() {
        return Err("empty");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err("empty segment");
        }
        if segment == "." || segment == ".." {
            return Err("relative segment");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("only ASCII letters, digits, '-', '_' and '.' are allowed");
        }
    }
    Ok(key.split('/'))
}

/// A parsed `--blob-url`.
#[derive(Debug)]
enum Location {
    Directory(PathBuf),
    S3 { bucket: String, prefix: ObjectPath },
}

/// Parses `file:///absolute/dir` and `s3://bucket[/prefix]`. By hand rather
/// than with a URL parser: the two shapes are simple, and a URL parser would
/// accept much that means nothing here (hosts in file URLs, queries, ports).
fn parse_url(url: &str) -> Result<Location, BlobError> {
    let invalid = |why: &str| BlobError::InvalidUrl(format!("{url}: {why}"));
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(invalid("expected file:///absolute/dir"));
        }
        if path.contains('%') {
            return Err(invalid("percent-escapes are not decoded; write the path as it is"));
        }
        return Ok(Location::Directory(PathBuf::from(path)));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket; expected s3://bucket[/prefix]"));
        }
        if bucket.contains(['?', '#', '@', ':']) {
            return Err(invalid(
                "expected s3://bucket[/prefix], without credentials, port or query",
            ));
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        let prefix = if prefix.is_empty() {
            ObjectPath::default()
        } else {
            key_segments(prefix)
                .map_err(|why| invalid(&format!("prefix: {why}")))?
                .map(PathPart::from)
                .collect()
        };
        return Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix,
        });
    }
    Err(invalid("expected file:///absolute/dir or s3://bucket[/prefix]"))
}
