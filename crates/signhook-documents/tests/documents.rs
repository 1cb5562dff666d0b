//! The documents of a signature request, end to end: uploads built with lopdf
//! go through `inspect`, `signed_pdf` and `audit_certificate`, and the
//! results are read back with lopdf and `extract_text`.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use signhook_documents::{
    audit_certificate, extract_text, inspect, signed_pdf, AuditCertificate, AuditDocument, DocumentError,
    SignatureLine, TrailEntry,
};

/// A PDF with one page per text. Resources and MediaBox sit on the Pages
/// root, as many producers write them, so that merging must carry them over.
fn pdf(texts: &[&str]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier", "Encoding" => "WinAnsiEncoding",
    });
    let kids: Vec<Object> = texts
        .iter()
        .map(|text| {
            let content = Content {
                operations: vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 12.into()]),
                    Operation::new("Td", vec![72.into(), 700.into()]),
                    Operation::new("Tj", vec![Object::string_literal(*text)]),
                    Operation::new("ET", vec![]),
                ],
            };
            let content = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
            doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => content })
                .into()
        })
        .collect();
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

fn signer(name: &str, email: &str, ip: &str) -> SignatureLine {
    SignatureLine {
        name: name.into(),
        email: email.into(),
        signed_at: "2025-03-04T05:06:07Z".into(),
        ip: ip.into(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                     Chrome/126.0.0.0 Safari/537.36"
            .into(),
    }
}

/// The text of one page (1-based), straight from lopdf.
fn page_text(bytes: &[u8], page: u32) -> String {
    Document::load_mem(bytes).unwrap().extract_text(&[page]).unwrap()
}

#[test]
fn inspect_counts_the_pages_of_a_pdf() {
    assert_eq!(inspect(&pdf(&["one"])).unwrap().pages, 1);
    assert_eq!(inspect(&pdf(&["one", "two", "three"])).unwrap().pages, 3);
}

#[test]
fn inspect_refuses_what_is_not_a_pdf() {
    let error = inspect(b"hello").unwrap_err();
    assert!(matches!(error, DocumentError::NotPdf));
    assert_eq!(
        error.to_string(),
        "the file is not a PDF (it does not start with %PDF-)"
    );
    assert!(matches!(inspect(b""), Err(DocumentError::NotPdf)));
}

#[test]
fn inspect_refuses_a_truncated_pdf() {
    let bytes = pdf(&["one", "two", "three"]);
    let error = inspect(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(error, DocumentError::Unreadable(_)), "{error:?}");
}

#[test]
fn inspect_refuses_a_pdf_without_pages() {
    let mut doc = Document::with_version("1.5");
    let pages = doc.add_object(dictionary! { "Type" => "Pages", "Kids" => Vec::<Object>::new(), "Count" => 0 });
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();

    let error = inspect(&bytes).unwrap_err();
    assert!(matches!(error, DocumentError::Unreadable(_)), "{error:?}");
    assert!(error.to_string().contains("no pages"), "{error}");
}

#[test]
fn inspect_refuses_an_encrypted_pdf() {
    let mut doc = Document::load_mem(&pdf(&["secret"])).unwrap();
    // The standard security handler derives its key from the file identifier.
    let id = Object::string_literal(b"0123456789abcdef".to_vec());
    doc.trailer.set("ID", vec![id.clone(), id]);
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password: "",
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).unwrap();
    doc.encrypt(&state).unwrap();
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();

    assert!(matches!(inspect(&bytes), Err(DocumentError::Encrypted)));
}

#[test]
fn the_signed_pdf_is_the_documents_followed_by_one_signature_page() {
    let first = pdf(&["Mutual NDA page one"]);
    let second = pdf(&["Annex A", "Annex B", "Annex C"]);
    let signers = [
        signer("Ada Lovelace", "ada@example.com", "203.0.113.7"),
        signer("Grace Hopper", "grace@example.org", "2001:db8::1"),
    ];

    let signed = signed_pdf("req_01J9", "Mutual NDA", &[&first, &second], &signers).unwrap();

    assert_eq!(inspect(&signed).unwrap().pages, 5);
    let text = extract_text(&signed).unwrap();
    let order: Vec<usize> = [
        "Mutual NDA page one",
        "Annex A",
        "Annex B",
        "Annex C",
        "Signatures — Mutual NDA",
    ]
    .iter()
    .map(|needle| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from {text}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "pages out of order: {text}"
    );

    let last = page_text(&signed, 5);
    for needle in [
        "req_01J9",
        "Ada Lovelace",
        "ada@example.com",
        "203.0.113.7",
        "grace@example.org",
        "2001:db8::1",
    ] {
        assert!(
            last.contains(needle),
            "{needle:?} missing from the signature page: {last}"
        );
    }
}

#[test]
fn merged_pages_keep_the_size_and_fonts_they_inherited() {
    let signed = signed_pdf("req_1", "NDA", &[&pdf(&["Inherited"])], &[]).unwrap();
    let doc = Document::load_mem(&signed).unwrap();
    let first = doc.get_pages()[&1];
    let page = doc.get_dictionary(first).unwrap();
    let media_box: Vec<i64> = page
        .get(b"MediaBox")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect();
    assert_eq!(media_box, [0, 0, 612, 792]);
    assert!(doc.get_page_fonts(first).unwrap().contains_key(b"F1".as_slice()));
    let signature_page = doc.get_dictionary(doc.get_pages()[&2]).unwrap();
    assert_eq!(
        signature_page.get(b"MediaBox").unwrap().as_array().unwrap()[3]
            .as_float()
            .unwrap(),
        842.0
    );
}

#[test]
fn names_with_parentheses_backslashes_and_accents_survive() {
    let awkward = signer("Zoë (CFO) \\ Müller)", "zoe@example.com", "198.51.100.2");
    let signed = signed_pdf("req_2", "Q3 (final) \\ draft", &[&pdf(&["x"])], &[awkward]).unwrap();
    let last = page_text(&signed, 2);
    assert!(last.contains("Zoë (CFO) \\ Müller)"), "{last}");
    assert!(last.contains("Signatures — Q3 (final) \\ draft"), "{last}");

    let unsupported = signer("李雷", "li@example.com", "198.51.100.3");
    let signed = signed_pdf("req_3", "NDA", &[&pdf(&["x"])], &[unsupported]).unwrap();
    assert!(page_text(&signed, 2).contains("1. ??"));
}

#[test]
fn twenty_signers_still_fit_on_one_signature_page_and_more_are_cut_short() {
    let many = |n: usize| -> Vec<SignatureLine> {
        (0..n)
            .map(|i| signer(&format!("Signer {i}"), &format!("s{i}@example.com"), "192.0.2.1"))
            .collect()
    };
    let document = pdf(&["x"]);

    let signed = signed_pdf("req_4", "NDA", &[&document], &many(20)).unwrap();
    assert_eq!(inspect(&signed).unwrap().pages, 2);
    assert!(page_text(&signed, 2).contains("s19@example.com"));

    let signed = signed_pdf("req_4", "NDA", &[&document], &many(80)).unwrap();
    assert_eq!(inspect(&signed).unwrap().pages, 2);
    let last = page_text(&signed, 2);
    assert!(
        last.contains("s0@example.com") && !last.contains("s79@example.com"),
        "{last}"
    );
    assert!(last.contains("more signers, listed in the audit certificate"), "{last}");
}

#[test]
fn the_signed_pdf_is_deterministic() {
    let document = pdf(&["x", "y"]);
    let signers = [signer("Ada", "ada@example.com", "203.0.113.7")];
    let once = signed_pdf("req_5", "NDA", &[&document], &signers).unwrap();
    let twice = signed_pdf("req_5", "NDA", &[&document], &signers).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn signed_pdf_refuses_an_input_that_inspect_refuses() {
    let result = signed_pdf("req_6", "NDA", &[&pdf(&["x"]), b"hello"], &[]);
    assert!(matches!(result, Err(DocumentError::NotPdf)));
}

fn certificate(trail_len: usize) -> AuditCertificate {
    AuditCertificate {
        request_id: "req_01J9".into(),
        request_name: "Mutual NDA".into(),
        completed_at: "2025-03-04T05:06:07Z".into(),
        documents: vec![
            AuditDocument {
                name: "nda.pdf".into(),
                sha256: "ab".repeat(32),
                pages: 1,
            },
            AuditDocument {
                name: "annex.pdf".into(),
                sha256: "0f".repeat(32),
                pages: 3,
            },
        ],
        signed_pdf_sha256: "9e".repeat(32),
        signers: vec![
            signer("Ada Lovelace", "ada@example.com", "203.0.113.7"),
            signer("Zoë (CFO)", "zoe@example.com", "2001:db8::1"),
        ],
        trail: (0..trail_len)
            .map(|i| TrailEntry {
                at: format!("2025-03-04T05:{:02}:{:02}Z", i / 60, i % 60),
                action: format!("event.{i}"),
                actor: "Ada Lovelace <ada@example.com>".into(),
                ip: Some("203.0.113.7".into()),
                user_agent: (i % 2 == 0).then(|| "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into()),
                detail: (i % 3 == 0).then(|| format!("detail of event {i}")),
            })
            .collect(),
    }
}

#[test]
fn the_audit_certificate_states_signers_and_hashes() {
    let pdf = audit_certificate(&certificate(5)).unwrap();
    assert_eq!(inspect(&pdf).unwrap().pages, 1);
    let text = extract_text(&pdf).unwrap();
    let cert = certificate(5);
    let needles = [
        "req_01J9".to_owned(),
        "ada@example.com".to_owned(),
        "zoe@example.com".to_owned(),
        "Zoë (CFO)".to_owned(),
        cert.documents[0].sha256.clone(),
        cert.documents[1].sha256.clone(),
        cert.signed_pdf_sha256.clone(),
        "event.4".to_owned(),
    ];
    for needle in needles {
        assert!(text.contains(&needle), "{needle:?} missing from {text}");
    }
}

#[test]
fn a_long_trail_paginates() {
    let pdf = audit_certificate(&certificate(200)).unwrap();
    let pages = inspect(&pdf).unwrap().pages;
    assert!(pages > 1, "{pages} page(s)");
    let last = page_text(&pdf, pages);
    assert!(last.contains("event.199"), "{last}");
    assert!(last.contains(&format!("Page {pages} of {pages}")), "{last}");
}
