//! The blob store against real storage: a temp directory, and a real
//! S3-compatible server (moto, started per test by the testkit).

use signhook_store::blobs::{BlobError, BlobStore};
use signhook_testkit::s3::S3Server;

const DOCUMENT: &str = "sr_01/documents/doc_01.pdf";
const SIGNED: &str = "sr_01/signed.pdf";
const CERTIFICATE: &str = "sr_01/audit_certificate.pdf";
/// Starts like sr_01 but is another request: prefixes match whole segments.
const NEIGHBOUR: &str = "sr_012/signed.pdf";
const OTHER: &str = "sr_02/signed.pdf";

/// The checks every backend must pass: round trip, overwrite, missing key,
/// and deleting one request's files and nothing else.
async fn check_backend(blobs: &BlobStore) {
    for key in [DOCUMENT, SIGNED, CERTIFICATE, NEIGHBOUR, OTHER] {
        blobs.put(key, format!("%PDF {key}").into_bytes()).await.unwrap();
    }
    assert_eq!(
        blobs.get(DOCUMENT).await.unwrap(),
        format!("%PDF {DOCUMENT}").into_bytes()
    );

    blobs.put(SIGNED, b"%PDF signed again".to_vec()).await.unwrap();
    assert_eq!(blobs.get(SIGNED).await.unwrap(), b"%PDF signed again");

    let missing = blobs.get("sr_01/nothing.pdf").await.unwrap_err();
    assert!(
        matches!(&missing, BlobError::NotFound(key) if key == "sr_01/nothing.pdf"),
        "{missing:?}"
    );

    assert_eq!(blobs.delete_prefix("sr_01/").await.unwrap(), 3);
    for key in [DOCUMENT, SIGNED, CERTIFICATE] {
        assert!(
            matches!(blobs.get(key).await, Err(BlobError::NotFound(_))),
            "{key} survived"
        );
    }
    for key in [NEIGHBOUR, OTHER] {
        assert_eq!(blobs.get(key).await.unwrap(), format!("%PDF {key}").into_bytes());
    }
    // Again, and without the slash: nothing left to delete is not an error.
    assert_eq!(blobs.delete_prefix("sr_01").await.unwrap(), 0);
    assert_eq!(blobs.delete_prefix("sr_never_stored/").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_in_the_data_dir() {
    let data_dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(None, data_dir.path()).unwrap();
    let root = data_dir.path().join("blobs");
    assert_eq!(blobs.describe(), format!("local directory {}", root.display()));

    check_backend(&blobs).await;

    // Keys are paths under <data-dir>/blobs, and a deleted request leaves no
    // empty directory behind.
    assert!(root.join(OTHER).is_file());
    assert!(!root.join("sr_01").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_from_a_file_url() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("not/yet/there");
    let url = format!("file://{}", dir.display());
    let blobs = BlobStore::open(Some(&url), parent.path()).unwrap();
    assert_eq!(blobs.describe(), format!("local directory {}", dir.display()));

    blobs.put(SIGNED, b"%PDF".to_vec()).await.unwrap();
    assert_eq!(std::fs::read(dir.join(SIGNED)).unwrap(), b"%PDF");
    // Not in the data dir's default place.
    assert!(!parent.path().join("blobs").exists());

    check_backend(&blobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_sees_a_partial_file() {
    let data_dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(None, data_dir.path()).unwrap();
    const SIZE: usize = 4 << 20;
    const VERSIONS: u8 = 8;

    let writer = {
        let blobs = blobs.clone();
        tokio::spawn(async move {
            for version in 1..=VERSIONS {
                blobs.put(SIGNED, vec![version; SIZE]).await.unwrap();
            }
        })
    };
    // Each version is one byte repeated: a torn read would show a short
    // file or two different bytes.
    let mut seen = 0;
    while !writer.is_finished() {
        match blobs.get(SIGNED).await {
            Ok(bytes) => {
                assert_eq!(bytes.len(), SIZE, "a partial file");
                assert!(bytes.iter().all(|b| *b == bytes[0]), "a mix of two versions");
                assert!(bytes[0] >= seen, "an older version came back");
                seen = bytes[0];
            }
            Err(BlobError::NotFound(_)) => assert_eq!(seen, 0, "the file disappeared while replaced"),
            Err(e) => panic!("{e:?}"),
        }
    }
    writer.await.unwrap();
    assert_eq!(blobs.get(SIGNED).await.unwrap(), vec![VERSIONS; SIZE]);
}

#[tokio::test]
async fn keys_are_checked() {
    let data_dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(None, data_dir.path()).unwrap();
    for key in [
        "",
        "/sr_01/signed.pdf",
        "sr_01//signed.pdf",
        "sr_01/signed.pdf/",
        "../signed.pdf",
        "sr_01/../sr_02/signed.pdf",
        "sr_01/./signed.pdf",
        "sr_01/signed pdf",
        "sr_01/signed.pdf#1",
        "sr_01\\signed.pdf",
    ] {
        let err = blobs.put(key, Vec::new()).await.unwrap_err();
        assert!(matches!(err, BlobError::InvalidKey(_)), "{key:?}: {err:?}");
        let err = blobs.get(key).await.unwrap_err();
        assert!(matches!(err, BlobError::InvalidKey(_)), "{key:?}: {err:?}");
    }
    // An empty prefix would be the whole store.
    for prefix in ["", "/", "../"] {
        let err = blobs.delete_prefix(prefix).await.unwrap_err();
        assert!(matches!(err, BlobError::InvalidKey(_)), "{prefix:?}: {err:?}");
    }
}

#[test]
fn blob_urls_are_checked() {
    let data_dir = tempfile::tempdir().unwrap();
    for url in [
        "",
        "blobs",
        "/var/lib/signhook/blobs",
        "http://example.com/blobs",
        "file://relative/dir",
        "file:///with%20escape",
        "s3://",
        "s3:///prefix",
        "s3://bucket/a//b",
        "s3://bucket/../b",
        "s3://key:secret@bucket",
        "s3://bucket?region=eu-west-1",
    ] {
        let err = BlobStore::open(Some(url), data_dir.path()).unwrap_err();
        assert!(matches!(err, BlobError::InvalidUrl(_)), "{url:?}: {err:?}");
    }
    let err = BlobStore::s3("file:///tmp", [("aws_region", "us-east-1")]).unwrap_err();
    assert!(matches!(err, BlobError::InvalidUrl(_)), "{err:?}");
    let err = BlobStore::s3("s3://bucket", [("aws_no_such_option", "1")]).unwrap_err();
    assert!(matches!(err, BlobError::InvalidUrl(_)), "{err:?}");
}

#[test]
fn an_s3_url_opens_without_io() {
    // Configured from the environment, but building the client contacts
    // nothing: the bucket need not exist.
    let data_dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(Some("s3://signhook-docs/prod/eu/"), data_dir.path()).unwrap();
    assert_eq!(blobs.describe(), "s3://signhook-docs/prod/eu");
    let blobs = BlobStore::open(Some("s3://signhook-docs"), data_dir.path()).unwrap();
    assert_eq!(blobs.describe(), "s3://signhook-docs");
    assert!(!data_dir.path().join("blobs").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket() {
    let s3 = S3Server::start();
    let blobs = BlobStore::s3(&s3.bucket_url(), s3.options()).unwrap();
    assert_eq!(blobs.describe(), s3.bucket_url());

    check_backend(&blobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_live_under_the_prefix() {
    let s3 = S3Server::start();
    let tenant_a = BlobStore::s3(&format!("{}/tenant-a/", s3.bucket_url()), s3.options()).unwrap();
    let tenant_b = BlobStore::s3(&format!("{}/tenant-b", s3.bucket_url()), s3.options()).unwrap();
    let whole_bucket = BlobStore::s3(&s3.bucket_url(), s3.options()).unwrap();
    assert_eq!(tenant_a.describe(), format!("{}/tenant-a", s3.bucket_url()));

    check_backend(&tenant_a).await;

    tenant_a.put(SIGNED, b"a".to_vec()).await.unwrap();
    tenant_b.put(SIGNED, b"b".to_vec()).await.unwrap();
    assert_eq!(tenant_a.get(SIGNED).await.unwrap(), b"a");
    assert_eq!(whole_bucket.get(&format!("tenant-a/{SIGNED}")).await.unwrap(), b"a");
    assert_eq!(whole_bucket.get(&format!("tenant-b/{SIGNED}")).await.unwrap(), b"b");

    assert_eq!(tenant_b.delete_prefix("sr_01/").await.unwrap(), 1);
    assert_eq!(tenant_a.get(SIGNED).await.unwrap(), b"a", "another prefix's files stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_bucket_see_each_others_files() {
    let s3 = S3Server::start();
    let url = format!("{}/cluster", s3.bucket_url());
    let node_1 = BlobStore::s3(&url, s3.options()).unwrap();
    let node_2 = BlobStore::s3(&url, s3.options()).unwrap();

    node_1.put(DOCUMENT, b"uploaded on node 1".to_vec()).await.unwrap();
    assert_eq!(node_2.get(DOCUMENT).await.unwrap(), b"uploaded on node 1");

    node_2.put(SIGNED, b"signed on node 2".to_vec()).await.unwrap();
    assert_eq!(node_1.get(SIGNED).await.unwrap(), b"signed on node 2");

    assert_eq!(node_2.delete_prefix("sr_01/").await.unwrap(), 2);
    assert!(matches!(node_1.get(DOCUMENT).await, Err(BlobError::NotFound(_))));
    assert!(matches!(node_1.get(SIGNED).await, Err(BlobError::NotFound(_))));
}
