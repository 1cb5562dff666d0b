//! The seal, checked by other implementations: poppler's `pdfsig` must find
//! the signature valid and covering the whole file, and unvalid once one
//! signed byte changes; OpenSSL must read the CMS as PAdES wants it and
//! verify it. Key files are made with `openssl` as an operator would.
//!
//! `pdfsig` reports a self-signed certificate as not trusted ("Certificate
//! issuer is unknown"): that is the certificate's validation, a separate
//! line from the signature's, and expected — nobody vouches for it.

use chrono::{TimeZone, Utc};
use signhook_documents::{
    audit_certificate, inspect, seal, signed_pdf, AuditCertificate, Fonts, SealKeyError, Sealer, SignatureLine,
};
use std::path::Path;
use std::process::Command;

const CONTRACT: &[u8] = include_bytes!("../../signhook/tests/fixtures/contract.pdf");
const ANNEX: &[u8] = include_bytes!("../../signhook/tests/fixtures/annex.pdf");

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 4, 5).unwrap()
}

fn self_signed() -> Sealer {
    Sealer::self_signed("Signhook seal (self-signed)", "Signhook node test", now()).unwrap()
}

fn certificate() -> Vec<u8> {
    audit_certificate(
        &Fonts::builtin(),
        &AuditCertificate {
            request_id: "sr_1".into(),
            request_name: "Master Services Agreement".into(),
            completed_at: "2026-12-01T10:04:05.000Z".into(),
            documents: vec![],
            signed_pdf_sha256: "ab".repeat(32),
            signers: vec![signer()],
            trail: vec![],
        },
    )
    .unwrap()
}

fn signer() -> SignatureLine {
    SignatureLine {
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        signed_at: "2026-12-01T10:04:05.000Z".into(),
        ip: "127.0.0.1".into(),
        user_agent: "curl/8.5.0".into(),
    }
}

/// What `pdfsig` says of `pdf`.
fn pdfsig(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealed.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdfsig")
        .arg(&file)
        .output()
        .expect("pdfsig runs (apt-get install poppler-utils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The file is sealed, the seal is intact and covers every byte.
fn assert_sealed(pdf: &[u8]) {
    let report = pdfsig(pdf);
    assert!(report.contains("Signature Validation: Signature is Valid."), "{report}");
    assert!(report.contains("Total document signed"), "{report}");
    assert!(report.contains("Signature Type: ETSI.CAdES.detached"), "{report}");
}

/// Where `needle` last occurs in `pdf` (which is bytes, not text).
fn rfind(pdf: &[u8], needle: &str) -> Option<usize> {
    pdf.windows(needle.len())
        .rposition(|window| window == needle.as_bytes())
}

/// The `/ByteRange` of the last signature and the DER in its `/Contents`.
fn signature_of(pdf: &[u8]) -> ([usize; 4], Vec<u8>) {
    let at = rfind(pdf, "/ByteRange [").unwrap() + "/ByteRange [".len();
    let numbers: Vec<usize> = String::from_utf8_lossy(&pdf[at..at + 64])
        .split(']')
        .next()
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let range = [numbers[0], numbers[1], numbers[2], numbers[3]];
    let hex = std::str::from_utf8(&pdf[range[1] + 1..range[2] - 1]).unwrap();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    // The DER's own length says where the zero padding starts.
    let (header, length) = match bytes[1] {
        n if n < 0x80 => (2, usize::from(n)),
        0x81 => (3, usize::from(bytes[2])),
        0x82 => (4, usize::from(bytes[2]) << 8 | usize::from(bytes[3])),
        other => panic!("an unexpected DER length byte {other:#x}"),
    };
    (range, bytes[..header + length].to_vec())
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program).current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_sealed_audit_certificate_is_valid_and_signed_whole() {
    let pdf = certificate();
    let sealed = seal(&pdf, &self_signed(), now()).unwrap();
    assert!(
        sealed.starts_with(&pdf),
        "an incremental update keeps the original bytes"
    );
    assert_eq!(inspect(&sealed).unwrap().pages, 1);
    assert_sealed(&sealed);
    let report = pdfsig(&sealed);
    assert!(
        report.contains("Signer Certificate Common Name: Signhook seal (self-signed)"),
        "{report}"
    );
    assert!(report.contains("Signing Time: Dec 01 2026 10:04:05"), "{report}");
    assert!(report.contains("Signing Hash Algorithm: SHA-256"), "{report}");
}

#[test]
fn a_sealed_signed_pdf_is_valid_and_signed_whole() {
    let pdf = signed_pdf(
        &Fonts::builtin(),
        "sr_1",
        "Master Services Agreement",
        &[CONTRACT, ANNEX],
        &[signer()],
    )
    .unwrap();
    let sealed = seal(&pdf, &self_signed(), now()).unwrap();
    assert_eq!(inspect(&sealed).unwrap().pages, inspect(&pdf).unwrap().pages);
    assert_sealed(&sealed);
    // The upload as it came (a classic cross-reference table, where our
    // own files have a stream) seals as well.
    assert_sealed(&seal(CONTRACT, &self_signed(), now()).unwrap());
}

#[test]
fn one_changed_byte_in_the_signed_ranges_breaks_the_seal() {
    let sealed = seal(&certificate(), &self_signed(), now()).unwrap();
    let (range, _) = signature_of(&sealed);
    // A byte of the original file (its version), a byte of its text (the
    // title in its metadata: the pages' text is compressed glyph ids), and a
    // byte of the seal's own dictionary (its reason): each leaves a
    // readable PDF whose signed bytes differ.
    let version = "%PDF-1.".len();
    let title = rfind(&sealed, "Master Services Agreement").expect("the title is in the metadata") + 3;
    let reason = rfind(&sealed, "Sealed by Signhook").unwrap();
    for at in [version, title, reason] {
        assert!(at < range[1] || at >= range[2], "{at} is in a signed range");
        let mut tampered = sealed.clone();
        tampered[at] ^= 0x01;
        let report = pdfsig(&tampered);
        assert!(
            report.contains("Signature Validation: Digest Mismatch.") && !report.contains("Signature is Valid"),
            "byte {at} changed: {report}"
        );
    }
}

#[test]
fn the_signature_is_cades_with_the_signing_certificate_and_openssl_verifies_it() {
    let sealed = seal(&certificate(), &self_signed(), now()).unwrap();
    let (range, der) = signature_of(&sealed);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signature.der"), &der).unwrap();
    let signed = [&sealed[range[0]..range[1]], &sealed[range[2]..range[2] + range[3]]].concat();
    std::fs::write(dir.path().join("signed.bin"), signed).unwrap();

    let printed = run(
        dir.path(),
        "openssl",
        &["cms", "-cmsout", "-print", "-inform", "DER", "-in", "signature.der"],
    );
    for attribute in [
        "contentType (1.2.840.113549.1.9.3)",
        "messageDigest (1.2.840.113549.1.9.4)",
        "id-smime-aa-signingCertificateV2 (1.2.840.113549.1.9.16.2.47)",
    ] {
        assert!(printed.contains(attribute), "{attribute} missing: {printed}");
    }
    assert!(
        !printed.contains("signingTime"),
        "PAdES puts the time in /M, not in the CMS: {printed}"
    );
    assert!(printed.contains("eContent: <ABSENT>"), "detached: {printed}");

    // The signature verifies over exactly the byte ranges (the certificate
    // is self-signed, hence -noverify: no chain to check).
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "cms",
            "-verify",
            "-binary",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            "signature.der",
        ])
        .args(["-content", "signed.bin", "-out", "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Verification successful"));
}

#[test]
fn a_sealed_file_can_be_sealed_again() {
    let once = seal(&certificate(), &self_signed(), now()).unwrap();
    let twice = seal(&once, &self_signed(), now()).unwrap();
    let report = pdfsig(&twice);
    assert!(report.contains("Signature #2"), "{report}");
    assert!(report.contains("Signature Field Name: Signhook seal 2"), "{report}");
    assert_eq!(report.matches("Signature is Valid.").count(), 2, "{report}");
    assert_eq!(
        report.matches("Total document signed").count(),
        1,
        "only the last covers all: {report}"
    );
}

#[test]
fn a_self_signed_sealer_says_what_it_is_and_hides_its_key() {
    let sealer = self_signed();
    assert_eq!(sealer.subject(), "CN=Signhook seal (self-signed),O=Signhook node test");
    assert_eq!(sealer.signer_name(), "Signhook seal (self-signed)");
    assert!(sealer.is_self_signed());
    assert_eq!(sealer.chain_len(), 1);
    assert_eq!(sealer.not_after().format("%Y").to_string(), "2056");
    let debug = format!("{sealer:?}");
    assert!(debug.contains("[redacted]") && !debug.contains("PRIVATE"), "{debug}");

    // Its PEM is a key file like any other: read back, it seals.
    let pem = sealer.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let again = Sealer::load(pem.as_bytes(), None).unwrap();
    assert_eq!(again.subject(), sealer.subject());
    assert_sealed(&seal(CONTRACT, &again, now()).unwrap());
    // And OpenSSL reads the key and the certificate in it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seal.pem"), &pem).unwrap();
    let text = run(dir.path(), "openssl", &["x509", "-in", "seal.pem", "-noout", "-text"]);
    assert!(text.contains("Digital Signature, Non Repudiation"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    run(dir.path(), "openssl", &["pkey", "-in", "seal.pem", "-noout"]);
}

/// Key files made by `openssl`, in the forms operators have.
struct KeyFiles {
    dir: tempfile::TempDir,
}

impl KeyFiles {
    fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let openssl = |args: &str| run(path, "openssl", &args.split(' ').collect::<Vec<_>>());
        // PKCS#8 EC P-256, self-signed.
        openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -out ec.crt -subj /CN=Ops_EC -days 30");
        // SEC1 P-384, with the EC PARAMETERS block ecparam writes.
        openssl("ecparam -name secp384r1 -genkey -out p384.key");
        openssl("req -x509 -key p384.key -out p384.crt -subj /CN=Ops_P384 -days 30");
        // PKCS#1 RSA.
        openssl("genrsa -traditional -out rsa.key 2048");
        openssl("req -x509 -key rsa.key -out rsa.crt -subj /CN=Ops_RSA -days 30");
        // A CA and a leaf it issued.
        openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=Ops_CA -days 30 -addext basicConstraints=critical,CA:true");
        openssl(
            "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr -subj /CN=Ops_Leaf",
        );
        openssl("x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out leaf.crt -days 30");
        // PKCS#12: OpenSSL 3's default (AES, PBKDF2, SHA-256 MAC), the
        // legacy 3DES form, and one with an empty password.
        openssl("pkcs12 -export -inkey leaf.key -in leaf.crt -certfile ca.crt -out modern.p12 -passout pass:s3cret");
        openssl("pkcs12 -export -inkey leaf.key -in leaf.crt -certfile ca.crt -out tdes.p12 -passout pass:s3cret -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1");
        openssl("pkcs12 -export -inkey ec.key -in ec.crt -out empty.p12 -passout pass:");
        // What the seal refuses.
        openssl("genpkey -algorithm ed25519 -out ed.key");
        openssl("req -x509 -key ed.key -out ed.crt -subj /CN=Ops_Ed -days 30");
        openssl("genrsa -traditional -out small.key 1024");
        openssl("req -x509 -key small.key -out small.crt -subj /CN=Ops_Small -days 30");
        openssl("pkey -in ec.key -aes256 -passout pass:s3cret -out encrypted.key");
        Self { dir }
    }

    fn read(&self, names: &[&str]) -> Vec<u8> {
        names
            .iter()
            .flat_map(|name| std::fs::read(self.dir.path().join(name)).unwrap())
            .collect()
    }
}

#[test]
fn key_files_in_pem_and_pkcs12_seal() {
    let files = KeyFiles::make();
    let cases: [(&[&str], Option<&str>, &str, usize); 7] = [
        (&["ec.key", "ec.crt"], None, "CN=Ops_EC", 1),
        (&["p384.crt", "p384.key"], None, "CN=Ops_P384", 1),
        (&["rsa.key", "rsa.crt"], None, "CN=Ops_RSA", 1),
        // Chain given CA first: the leaf is the key's certificate anyway.
        (&["ca.crt", "leaf.key", "leaf.crt"], None, "CN=Ops_Leaf", 2),
        (&["modern.p12"], Some("s3cret"), "CN=Ops_Leaf", 2),
        (&["tdes.p12"], Some("s3cret"), "CN=Ops_Leaf", 2),
        (&["empty.p12"], None, "CN=Ops_EC", 1),
    ];
    for (names, password, subject, chain) in cases {
        let sealer = Sealer::load(&files.read(names), password).unwrap_or_else(|e| panic!("{names:?}: {e}"));
        assert_eq!(
            (sealer.subject().as_str(), sealer.chain_len()),
            (subject, chain),
            "{names:?}"
        );
        let sealed = seal(CONTRACT, &sealer, now()).unwrap();
        assert_sealed(&sealed);
        if names == ["p384.crt", "p384.key"] {
            assert!(pdfsig(&sealed).contains("Signing Hash Algorithm: SHA-384"));
        }
    }
}

#[test]
fn unusable_key_files_are_refused_with_the_reason() {
    let files = KeyFiles::make();
    let refusal = |names: &[&str], password: Option<&str>| Sealer::load(&files.read(names), password).unwrap_err();
    assert!(matches!(
        refusal(&["modern.p12"], Some("wrong")),
        SealKeyError::WrongPassword
    ));
    assert!(matches!(refusal(&["modern.p12"], None), SealKeyError::WrongPassword));
    assert!(matches!(
        refusal(&["ec.key", "leaf.crt"], None),
        SealKeyError::KeyDoesNotMatch
    ));
    assert!(matches!(refusal(&["ec.crt"], None), SealKeyError::NoKey));
    assert!(matches!(refusal(&["ec.key"], None), SealKeyError::NoCertificate));
    assert!(matches!(
        refusal(&["ec.key", "rsa.key", "ec.crt"], None),
        SealKeyError::SeveralKeys
    ));
    assert!(matches!(
        refusal(&["encrypted.key", "ec.crt"], None),
        SealKeyError::EncryptedPem
    ));
    let ed25519 = refusal(&["ed.key", "ed.crt"], None);
    assert!(
        matches!(&ed25519, SealKeyError::UnsupportedKey(what) if what == "Ed25519"),
        "{ed25519}"
    );
    let small = refusal(&["small.key", "small.crt"], None);
    assert!(matches!(&small, SealKeyError::UnsupportedKey(_)), "{small}");
    assert!(small.to_string().contains("RSA of 2048 bits or more"), "{small}");
    assert!(matches!(
        Sealer::load(b"hello", None).unwrap_err(),
        SealKeyError::UnknownFormat
    ));
    let truncated = files.read(&["modern.p12"]);
    assert!(matches!(
        Sealer::load(&truncated[..truncated.len() / 2], Some("s3cret")).unwrap_err(),
        SealKeyError::Malformed(_)
    ));
}
