//! The documents of a signature request, end to end: uploads built with lopdf
//! go through `inspect`, `signed_pdf` and `audit_certificate`, and the
//! results are read back as a reader does, with poppler's `pdftotext` and
//! `pdffonts`.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use signhook_documents::{
    inspect, AuditCertificate, AuditDocument, DocumentError, FontFile, Fonts, SignatureLine, TrailEntry,
};
use signhook_testkit::poppler::{pdf_fonts, pdf_page_text, pdf_text, save_page_as_png};

fn signed_pdf(
    request_id: &str,
    request_name: &str,
    documents: &[&[u8]],
    signatures: &[SignatureLine],
) -> Result<Vec<u8>, DocumentError> {
    signhook_documents::signed_pdf(&Fonts::builtin(), request_id, request_name, documents, signatures)
}

fn audit_certificate(cert: &AuditCertificate) -> Result<Vec<u8>, DocumentError> {
    signhook_documents::audit_certificate(&Fonts::builtin(), cert)
}

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
        signed_at: "2025-03-04 05:06:07 UTC".into(),
        ip: ip.into(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                     Chrome/126.0.0.0 Safari/537.36"
            .into(),
    }
}

/// The text of one page (1-based), as a reader copies it.
fn page_text(bytes: &[u8], page: u32) -> String {
    pdf_page_text(bytes, page)
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
    let text = pdf_text(&signed);
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

    // Helvetica printed this as "1. ??".
    let chinese = signer("李雷", "li@example.com", "198.51.100.3");
    let signed = signed_pdf("req_3", "NDA", &[&pdf(&["x"])], &[chinese]).unwrap();
    let last = page_text(&signed, 2);
    assert!(last.contains("1. 李雷"), "{last}");
    assert!(!last.contains('?'), "{last}");
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
        completed_at: "2025-03-04 05:06:07 UTC".into(),
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
                at: format!("2025-03-04 05:{:02}:{:02} UTC", i / 60, i % 60),
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
    let text = pdf_text(&pdf);
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

/// A request in six scripts, as issue 15 tells it.
const REQUEST_NAME: &str = "Umowa — Łódź 合同";
const NAMES: [&str; 6] = [
    "Łukasz Żółć",
    "Αλέξανδρος Παπαδόπουλος",
    "Дмитрий Иванов",
    "محمد الأحمد",
    "דוד כהן",
    "王小明",
];

fn signers_in_every_script() -> Vec<SignatureLine> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| signer(name, &format!("signer{i}@example.com"), "203.0.113.9"))
        .collect()
}

fn certificate_in_every_script() -> AuditCertificate {
    let signers = signers_in_every_script();
    let trail = signers
        .iter()
        .flat_map(|s| {
            let person = format!("{} <{}>", s.name, s.email);
            ["signer.link_opened", "signer.done"].map(|action| TrailEntry {
                at: "2026-12-01 10:04:05 UTC".into(),
                action: action.into(),
                actor: person.clone(),
                ip: Some(s.ip.clone()),
                user_agent: Some(s.user_agent.clone()),
                detail: Some(format!("signer {person}")),
            })
        })
        .collect();
    AuditCertificate {
        request_id: "req_scripts".into(),
        request_name: REQUEST_NAME.into(),
        completed_at: "2026-12-01 10:04:05 UTC".into(),
        documents: vec![AuditDocument {
            name: "umowa-合同.pdf".into(),
            sha256: "ab".repeat(32),
            pages: 1,
        }],
        signed_pdf_sha256: "9e".repeat(32),
        signers,
        trail,
    }
}

/// The signed PDF (one document, then the signature page) and the audit
/// certificate of the request in six scripts.
fn both_in_every_script() -> (Vec<u8>, Vec<u8>) {
    let document = pdf(&["Contract"]);
    let signed = signed_pdf("req_scripts", REQUEST_NAME, &[&document], &signers_in_every_script()).unwrap();
    let certificate = audit_certificate(&certificate_in_every_script()).unwrap();
    (signed, certificate)
}

/// The text as a reader copies it. pdftotext wraps each right-to-left run
/// in the bidi embedding controls U+202B … U+202C (so that a plain-text
/// viewer keeps it right to left); they are invisible formatting, not part
/// of the name, and are taken out before comparing. Nothing else is
/// changed: the Arabic comes out as its letters, not presentation forms.
fn as_copied(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}'))
        .collect()
}

#[test]
fn names_in_every_script_come_back_exactly_from_both_pdfs() {
    let (signed, certificate) = both_in_every_script();

    // Kept for a person to look at (not committed): target/tmp/scripts/.
    let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scripts");
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::write(keep.join("signed.pdf"), &signed).unwrap();
    std::fs::write(keep.join("certificate.pdf"), &certificate).unwrap();
    save_page_as_png(&signed, 2, 60, &keep.join("signature-page.png"));
    save_page_as_png(&certificate, 1, 60, &keep.join("certificate-page-1.png"));

    let page = as_copied(&page_text(&signed, 2));
    let certified = as_copied(&pdf_text(&certificate));
    for text in [&page, &certified] {
        assert!(text.contains(REQUEST_NAME), "{REQUEST_NAME:?} missing from {text}");
        for (i, name) in NAMES.iter().enumerate() {
            // The whole line, so that the name is not merely scattered.
            let line = format!("{}. {name}", i + 1);
            assert!(text.lines().any(|l| l.trim() == line), "{line:?} missing from {text}");
        }
        // Nothing was replaced, and no Arabic presentation form leaked out.
        assert!(!text.contains('?') && !text.contains('\u{FFFD}'), "{text}");
        assert!(!text.chars().any(|c| ('\u{FB50}'..='\u{FEFF}').contains(&c)), "{text}");
    }
    // The trail's sentences name each signer in their script too. (Where
    // the name is right to left, pdftotext moves the "<" of the address
    // before it, so the line is checked for the name and the address.)
    for (i, name) in NAMES.iter().enumerate() {
        let address = format!("signer{i}@example.com>");
        let signed = certified
            .lines()
            .find(|line| line.contains(&address) && line.ends_with(" signed"))
            .unwrap_or_else(|| panic!("no sentence says {name} signed: {certified}"));
        assert!(signed.contains(name), "{name:?} missing from {signed:?}");
    }
}

#[test]
fn both_pdfs_embed_font_subsets_with_unicode_maps() {
    let (signed, certificate) = both_in_every_script();
    for pdf in [&signed, &certificate] {
        let table = pdf_fonts(pdf);
        // name, type, encoding, emb, sub, uni, object id: one row a font.
        let ours: Vec<Vec<&str>> = table
            .lines()
            .skip(2)
            .map(|row| row.split_whitespace().collect::<Vec<_>>())
            .filter(|row| row[0] != "Courier")
            .collect();
        let names: Vec<&str> = ours.iter().map(|row| row[0]).collect();
        assert_eq!(ours.len(), 2, "{table}");
        for (row, family) in ours.iter().zip(["DejaVuSans", "DroidSansFallback"]) {
            let (tag, name) = row[0]
                .split_once('+')
                .unwrap_or_else(|| panic!("not a subset: {table}"));
            assert!(tag.len() == 6 && tag.chars().all(|c| c.is_ascii_uppercase()), "{table}");
            assert_eq!(name, family, "{names:?}");
            assert_eq!(&row[row.len() - 5..row.len() - 2], ["yes", "yes", "yes"], "{table}");
        }
    }
    // A subset: the certificate holds a few dozen kilobytes of the ~4.8 MB
    // of fonts.
    assert!(certificate.len() < 150_000, "{} bytes", certificate.len());
}

#[test]
fn the_audit_certificate_is_deterministic_in_every_script() {
    let once = audit_certificate(&certificate_in_every_script()).unwrap();
    let twice = audit_certificate(&certificate_in_every_script()).unwrap();
    assert_eq!(once, twice);
    let signers = signers_in_every_script();
    let once = signed_pdf("req", REQUEST_NAME, &[&pdf(&["x"])], &signers).unwrap();
    let twice = signed_pdf("req", REQUEST_NAME, &[&pdf(&["x"])], &signers).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn the_certificate_tells_the_trail_in_sentences_and_how_signers_were_authenticated() {
    let text = as_copied(&pdf_text(&audit_certificate(&certificate_in_every_script()).unwrap()));
    assert!(text.contains("Completed at: 2026-12-01 10:04:05 UTC"), "{text}");
    assert!(
        text.contains("2026-12-01 10:04:05 UTC — Łukasz Żółć <signer0@example.com> signed"),
        "{text}"
    );
    assert!(
        text.contains("Łukasz Żółć <signer0@example.com> opened the signing link"),
        "{text}"
    );
    assert!(!text.contains("signer.done"), "no raw action names: {text}");
    // Once a signer; pdftotext may wrap the sentence, so its words are
    // counted on one line each.
    let authenticated = text
        .matches("Authenticated by possession of the personal signing link sent to their e-mail")
        .count();
    assert_eq!(authenticated, NAMES.len(), "{text}");
}

#[test]
fn an_operators_font_is_tried_before_the_built_in_ones() {
    // The baht sign is one of the few characters both built-in fonts have:
    // DejaVu Sans, tried first, sets it, unless Droid Sans Fallback is
    // preferred.
    let mut cert = certificate(3);
    cert.request_name = "Rent ฿".into();
    let table = pdf_fonts(&audit_certificate(&cert).unwrap());
    assert!(!table.contains("DroidSansFallback"), "{table}");

    let droid = FontFile::parse(include_bytes!("../fonts/DroidSansFallbackFull.ttf").to_vec()).unwrap();
    let fonts = Fonts::preferring(vec![droid]);
    let pdf = signhook_documents::audit_certificate(&fonts, &cert).unwrap();
    let table = pdf_fonts(&pdf);
    assert!(table.contains("+DroidSansFallback"), "{table}");
    assert!(pdf_text(&pdf).contains("Request: Rent ฿"));
}

#[test]
fn what_is_not_a_font_is_refused_in_words() {
    let error = FontFile::parse(b"%PDF-1.7 not a font".to_vec()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "it is not a TrueType or OpenType font (.ttf, .otf, or the first font of a .ttc)"
    );
}
