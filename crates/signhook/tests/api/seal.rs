//! The seal as an operator sets it up and a receiver checks it: the
//! self-signed default kept in the data directory, `--seal-cert` with a PEM
//! the operator made, and a key file that cannot seal stopping `serve` with
//! the flag named. Files are checked with poppler's `pdfsig`.

use crate::helpers::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// What `pdfsig` says of `pdf`, after asserting that the seal is intact and
/// covers every byte.
pub fn assert_sealed(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdfsig")
        .arg(&file)
        .output()
        .expect("pdfsig runs (apt-get install poppler-utils)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Signature Validation: Signature is Valid."), "{report}");
    assert!(report.contains("Total document signed"), "{report}");
    assert!(report.contains("Signature Type: ETSI.CAdES.detached"), "{report}");
    report
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `signhook serve` with `args`, expected to stop at once: its stderr.
async fn refused_start(db: &Database, args: &[&str], env: &[(&str, &str)]) -> String {
    let serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_signhook"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(db.cli_args())
        .args(args)
        .envs(env.iter().copied())
        .output();
    let out = tokio::time::timeout(PATIENCE, serve)
        .await
        .expect("the server stops at once")
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sends the contract to one signer through `server`, signs it, and
/// returns the signed PDF and the audit certificate as served.
async fn sign_through(server: &BinaryServer, key: &str) -> (Vec<u8>, Vec<u8>) {
    let client = reqwest::Client::new();
    let body = json!({"name": "MSA", "signers": [{"name": "Ada Lovelace", "email": "ada@example.com"}]});
    let request = crate::esign::out_for_signature_at(&client, &server.url(""), key, body).await;
    let sign = server.relink(&format!("{}/sign", crate::esign::signing_url(&request, 0)));
    let body = crate::esign::signature(&json!("Ada Lovelace"));
    let (status, view) = read(client.post(sign).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 200, "{view}");
    let id = request["id"].as_str().unwrap();
    let (status, links) = server.get(key, &format!("/v1/signature_requests/{id}/links")).await;
    assert_eq!(status, 200, "{links}");
    let mut files = Vec::new();
    for file in ["signed_pdf", "audit_certificate"] {
        let url = server.relink(links[file]["url"].as_str().unwrap());
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{file}");
        files.push(response.bytes().await.unwrap().to_vec());
    }
    let certificate = files.pop().unwrap();
    (files.pop().unwrap(), certificate)
}

#[tokio::test]
async fn the_self_signed_seal_is_made_once_in_the_data_dir_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    let server = BinaryServer::start(&db, &["--dev"]);
    let file = db.dir.path().join("seal.pem");
    let kept = std::fs::read(&file).expect("the first start makes seal.pem");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let (signed, certificate) = sign_through(&server, &key).await;
    for pdf in [&signed, &certificate] {
        let report = assert_sealed(pdf);
        assert!(
            report.contains("Signer Certificate Common Name: Signhook seal (self-signed)"),
            "{report}"
        );
    }
    assert!(server.terminate().success());

    let server = BinaryServer::start(&db, &["--dev"]);
    assert_eq!(std::fs::read(&file).unwrap(), kept, "a restart reuses the seal");
    assert!(server.terminate().success());
}

#[tokio::test]
async fn seal_cert_seals_with_the_operators_certificate_and_a_bad_one_stops_the_start() {
    let db = Database::new(Backend::Sqlite).await;
    let key = cli_tenant_key(&db);
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Acme Document Signing/O=Acme",
        ],
    );
    let pem = [
        std::fs::read(dir.join("key.pem")).unwrap(),
        std::fs::read(dir.join("cert.pem")).unwrap(),
    ]
    .concat();
    let seal = dir.join("seal.pem");
    std::fs::write(&seal, pem).unwrap();
    let seal = seal.display().to_string();

    let server = BinaryServer::start(&db, &["--dev", "--seal-cert", &seal]);
    let (signed, certificate) = sign_through(&server, &key).await;
    for pdf in [&signed, &certificate] {
        let report = assert_sealed(pdf);
        assert!(
            report.contains("Signer Certificate Common Name: Acme Document Signing"),
            "{report}"
        );
    }
    assert!(server.terminate().success());
    assert!(
        !db.dir.path().join("seal.pem").exists(),
        "no self-signed seal when one is given"
    );

    // A PKCS#12 of the same key opens with its password, from the
    // environment; without it, or with another, the start stops.
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "key.pem",
            "-in",
            "cert.pem",
            "-out",
            "seal.p12",
            "-passout",
            "pass:s3cret",
        ],
    );
    let p12 = dir.join("seal.p12").display().to_string();
    let env = [("SIGNHOOK_SEAL_CERT_PASSWORD".to_owned(), "s3cret".to_owned())];
    let server = BinaryServer::start_with_env(&db, &["--dev", "--seal-cert", &p12], &env);
    assert!(server.terminate().success());
    let stderr = refused_start(&db, &["--seal-cert", &p12], &[("SIGNHOOK_SEAL_CERT_PASSWORD", "wrong")]).await;
    assert!(
        stderr.contains(&format!("--seal-cert {p12} cannot seal")) && stderr.contains("password is wrong"),
        "{stderr}"
    );

    // A file that is no key file, a key that is not the certificate's, a
    // file that is not there: each named, with its reason.
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a key file\n").unwrap();
    let garbage = garbage.display().to_string();
    let stderr = refused_start(&db, &["--seal-cert", &garbage], &[]).await;
    assert!(
        stderr.contains(&format!("--seal-cert {garbage} cannot seal")) && stderr.contains("neither a PEM file"),
        "{stderr}"
    );
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "other.pem",
        ],
    );
    let mismatched = dir.join("mismatched.pem");
    let pem = [
        std::fs::read(dir.join("other.pem")).unwrap(),
        std::fs::read(dir.join("cert.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(&mismatched, pem).unwrap();
    let mismatched = mismatched.display().to_string();
    let stderr = refused_start(&db, &["--seal-cert", &mismatched], &[]).await;
    assert!(
        stderr.contains("does not belong to any of its certificates"),
        "{stderr}"
    );
    let missing = dir.join("missing.p12").display().to_string();
    let stderr = refused_start(&db, &["--seal-cert", &missing], &[]).await;
    assert!(
        stderr.contains(&format!("cannot read --seal-cert {missing}")),
        "{stderr}"
    );
    // A password without a file is a flag error.
    let out = run_cli(&["serve", "--seal-cert-password", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seal-cert"), "{out:?}");
}
