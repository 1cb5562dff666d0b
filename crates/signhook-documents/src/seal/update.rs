//! The incremental update that carries the seal (ISO 32000-1 7.5.6): the
//! original bytes stay as they are, and after them come
//!
//! - the signature dictionary, with placeholders for `/ByteRange` and
//!   `/Contents` that are filled once the bytes around them are final;
//! - one object that is both the signature field and its widget
//!   annotation: invisible (`/Rect [0 0 0 0]`), printable and locked
//!   (`/F 132`), on the first page;
//! - the catalog again, its `/AcroForm` listing the field with `/SigFlags 3`
//!   (signatures exist; the file is only ever appended to), or the AcroForm
//!   object again when the catalog refers to one;
//! - the first page again, the field among its `/Annots`;
//! - a cross-reference section for these objects in the form the file
//!   already uses (a table, or a stream), and a trailer pointing back to the
//!   previous one with `/Prev`.
//!
//! Objects are written by a small serializer here, since lopdf's writer
//! is not public and the placeholders' offsets must be known exactly.

use crate::DocumentError;
use lopdf::{Dictionary, Document, Object, ObjectId, StringFormat};
use std::io::Write;
use std::ops::Range;

/// What the signature dictionary says besides its value.
pub(super) struct SignatureInfo {
    /// `/M`, a PDF date.
    pub time: String,
    /// `/Name`: the signer.
    pub name: String,
    /// `/Reason`.
    pub reason: String,
    /// The room `/Contents` has, in bytes of DER (twice as many hex digits).
    pub capacity: usize,
}

/// The file with the update appended, placeholders still empty.
pub(super) struct Prepared {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// Where the `/ByteRange` array's placeholder is (spaces may follow the
    /// array within it).
    pub byte_range: Range<usize>,
    /// The `/Contents` string from its `<` to its `>`, both included: what
    /// the signature does not cover.
    pub contents: Range<usize>,
}

/// The placeholder of `/ByteRange`: four numbers of up to ten digits fit.
const BYTE_RANGE_WIDTH: usize = "[0 0000000000 0000000000 0000000000]".len();

/// The base of the signature field's name; a number follows when the file
/// has a field of that name already (sealed twice).
const FIELD_NAME: &str = "Signhook seal";

/// Appends the update to `pdf` (parsed as `doc`), placing the field on
/// `page`.
pub(super) fn prepare(
    pdf: &[u8],
    doc: &Document,
    page: ObjectId,
    signature: &SignatureInfo,
) -> Result<Prepared, DocumentError> {
    let render = |what: &str| DocumentError::Render(format!("sealing the PDF failed: {what}"));
    let root = doc
        .trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(|_| render("the trailer names no catalog"))?;
    let size = doc
        .trailer
        .get(b"Size")
        .and_then(Object::as_i64)
        .ok()
        .and_then(|size| u32::try_from(size).ok())
        .unwrap_or(0)
        .max(doc.max_id + 1);
    let signature_id: ObjectId = (size, 0);
    let field_id: ObjectId = (size + 1, 0);
    let xref_stream_id: ObjectId = (size + 2, 0);
    let uses_xref_stream = !pdf.get(doc.xref_start..).is_some_and(|rest| rest.starts_with(b"xref"));

    // The objects written again, changed.
    let mut changed: Vec<(ObjectId, Dictionary)> = Vec::new();
    let mut catalog = doc
        .get_dictionary(root)
        .map_err(|e| render(&format!("the catalog cannot be read ({e})")))?
        .clone();
    let field_name = unused_field_name(doc, &catalog);
    match catalog.get(b"AcroForm") {
        Ok(Object::Reference(form_id)) => {
            let form_id = *form_id;
            let mut form = doc
                .get_dictionary(form_id)
                .map_err(|e| render(&format!("the form cannot be read ({e})")))?
                .clone();
            add_field(doc, &mut form, field_id);
            changed.push((form_id, form));
        }
        Ok(Object::Dictionary(form)) => {
            let mut form = form.clone();
            add_field(doc, &mut form, field_id);
            catalog.set("AcroForm", form);
        }
        _ => {
            let mut form = Dictionary::new();
            add_field(doc, &mut form, field_id);
            catalog.set("AcroForm", form);
        }
    }
    changed.push((root, catalog));
    let mut page_dict = doc
        .get_dictionary(page)
        .map_err(|e| render(&format!("the first page cannot be read ({e})")))?
        .clone();
    let mut annotations = array_entry(doc, &page_dict, b"Annots");
    annotations.push(Object::Reference(field_id));
    page_dict.set("Annots", annotations);
    changed.push((page, page_dict));

    let mut field = Dictionary::new();
    field.set("Type", Object::Name(b"Annot".to_vec()));
    field.set("Subtype", Object::Name(b"Widget".to_vec()));
    field.set("FT", Object::Name(b"Sig".to_vec()));
    field.set("T", text_string(&field_name));
    field.set("V", Object::Reference(signature_id));
    field.set("Rect", vec![0.into(), 0.into(), 0.into(), 0.into()]);
    // Print (4) and Locked (128): shown in print like any annotation, and
    // not movable or deletable in an editor.
    field.set("F", 132);
    field.set("P", Object::Reference(page));

    // The update, its offsets counted from the start of the file.
    let mut out = pdf.to_vec();
    if !matches!(out.last(), Some(b'\n' | b'\r')) {
        out.push(b'\n');
    }
    let mut offsets: Vec<(ObjectId, usize)> = Vec::new();

    offsets.push((signature_id, out.len()));
    put(
        &mut out,
        format_args!(
            "{} {} obj\n<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M ",
            signature_id.0, signature_id.1
        ),
    );
    write_object(&mut out, &Object::string_literal(signature.time.as_bytes()))?;
    out.extend_from_slice(b" /Name ");
    write_object(&mut out, &text_string(&signature.name))?;
    out.extend_from_slice(b" /Reason ");
    write_object(&mut out, &text_string(&signature.reason))?;
    out.extend_from_slice(b"\n/ByteRange ");
    let byte_range = out.len()..out.len() + BYTE_RANGE_WIDTH;
    out.extend(std::iter::repeat_n(b' ', BYTE_RANGE_WIDTH));
    out.extend_from_slice(b"\n/Contents ");
    let contents_start = out.len();
    out.push(b'<');
    out.extend(std::iter::repeat_n(b'0', signature.capacity * 2));
    out.push(b'>');
    let contents = contents_start..out.len();
    out.extend_from_slice(b" >>\nendobj\n");

    offsets.push((field_id, out.len()));
    write_indirect(&mut out, field_id, &Object::Dictionary(field))?;
    for (id, dict) in changed {
        offsets.push((id, out.len()));
        write_indirect(&mut out, id, &Object::Dictionary(dict))?;
    }

    let mut trailer = Dictionary::new();
    let next_size = if uses_xref_stream {
        xref_stream_id.0 + 1
    } else {
        field_id.0 + 1
    };
    trailer.set("Size", i64::from(next_size));
    trailer.set("Root", Object::Reference(root));
    for key in [b"Info".as_slice(), b"ID"] {
        if let Ok(value) = doc.trailer.get(key) {
            trailer.set(key, value.clone());
        }
    }
    trailer.set(
        "Prev",
        i64::try_from(doc.xref_start).map_err(|_| render("the file is too large"))?,
    );

    let xref_start = out.len();
    if uses_xref_stream {
        offsets.push((xref_stream_id, xref_start));
        offsets.sort();
        let mut rows = Vec::new();
        for &(id, offset) in &offsets {
            let offset = u32::try_from(offset).map_err(|_| render("the file is too large"))?;
            rows.push(1u8);
            rows.extend_from_slice(&offset.to_be_bytes());
            rows.extend_from_slice(&id.1.to_be_bytes());
        }
        trailer.set("Type", Object::Name(b"XRef".to_vec()));
        trailer.set("W", vec![1.into(), 4.into(), 2.into()]);
        trailer.set(
            "Index",
            subsections(&offsets)
                .into_iter()
                .flat_map(|(start, count)| [Object::from(i64::from(start)), Object::from(count as i64)])
                .collect::<Vec<_>>(),
        );
        trailer.set("Length", rows.len() as i64);
        put(
            &mut out,
            format_args!("{} {} obj\n", xref_stream_id.0, xref_stream_id.1),
        );
        write_object(&mut out, &Object::Dictionary(trailer))?;
        out.extend_from_slice(b"\nstream\n");
        out.extend_from_slice(&rows);
        out.extend_from_slice(b"\nendstream\nendobj\n");
    } else {
        offsets.sort();
        out.extend_from_slice(b"xref\n");
        let mut entries = offsets.iter();
        for (start, count) in subsections(&offsets) {
            put(&mut out, format_args!("{start} {count}\n"));
            for (id, offset) in entries.by_ref().take(count) {
                // Exactly 20 bytes an entry (7.5.4).
                put(&mut out, format_args!("{offset:010} {:05} n\r\n", id.1));
            }
        }
        out.extend_from_slice(b"trailer\n");
        write_object(&mut out, &Object::Dictionary(trailer))?;
        out.push(b'\n');
    }
    put(&mut out, format_args!("startxref\n{xref_start}\n%%EOF\n"));
    Ok(Prepared {
        bytes: out,
        byte_range,
        contents,
    })
}

/// Fills the `/ByteRange` placeholder: everything but `contents`.
pub(super) fn fill_byte_range(prepared: &mut Prepared) -> Result<[Range<usize>; 2], DocumentError> {
    let total = prepared.bytes.len();
    let (before, after) = (prepared.contents.start, prepared.contents.end);
    let array = format!("[0 {before} {after} {}]", total - after);
    if array.len() > BYTE_RANGE_WIDTH {
        return Err(DocumentError::Render(
            "sealing the PDF failed: the file is too large".into(),
        ));
    }
    prepared.bytes[prepared.byte_range.start..prepared.byte_range.start + array.len()]
        .copy_from_slice(array.as_bytes());
    Ok([0..before, after..total])
}

/// Runs of consecutive object numbers in sorted `offsets`: (first, count).
fn subsections(offsets: &[(ObjectId, usize)]) -> Vec<(u32, usize)> {
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for &((id, _), _) in offsets {
        match runs.last_mut() {
            Some((start, count)) if *start + *count as u32 == id => *count += 1,
            _ => runs.push((id, 1)),
        }
    }
    runs
}

/// The array at `key` of `dict`, given inline or by reference; empty when
/// absent or not an array.
fn array_entry(doc: &Document, dict: &Dictionary, key: &[u8]) -> Vec<Object> {
    match dict.get(key) {
        Ok(Object::Array(list)) => list.clone(),
        Ok(Object::Reference(id)) => doc
            .get_object(*id)
            .and_then(Object::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Adds the field to an AcroForm dictionary and marks it signed.
fn add_field(doc: &Document, form: &mut Dictionary, field: ObjectId) {
    let mut fields = array_entry(doc, form, b"Fields");
    fields.push(Object::Reference(field));
    form.set("Fields", fields);
    let flags = form.get(b"SigFlags").and_then(Object::as_i64).unwrap_or(0);
    form.set("SigFlags", flags | 3);
}

/// [`FIELD_NAME`], numbered when the form has a field of that name.
fn unused_field_name(doc: &Document, catalog: &Dictionary) -> String {
    let form = match catalog.get(b"AcroForm") {
        Ok(Object::Reference(id)) => doc.get_dictionary(*id).ok(),
        Ok(Object::Dictionary(form)) => Some(form),
        _ => None,
    };
    let fields = form
        .and_then(|form| form.get_deref(b"Fields", doc).ok())
        .and_then(|fields| fields.as_array().ok());
    let taken: Vec<Vec<u8>> = fields
        .into_iter()
        .flatten()
        .filter_map(|field| match field {
            Object::Reference(id) => doc.get_dictionary(*id).ok(),
            Object::Dictionary(field) => Some(field),
            _ => None,
        })
        .filter_map(|field| field.get(b"T").and_then(Object::as_str).ok().map(<[u8]>::to_vec))
        .collect();
    let mut name = FIELD_NAME.to_owned();
    let mut n = 1;
    while taken
        .iter()
        .any(|t| t == name.as_bytes() || *t == utf16_with_bom(&name))
    {
        n += 1;
        name = format!("{FIELD_NAME} {n}");
    }
    name
}

/// A PDF text string (7.9.2.2): plain when it is printable ASCII, else
/// UTF-16BE with a byte-order mark.
fn text_string(text: &str) -> Object {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Object::String(text.as_bytes().to_vec(), StringFormat::Literal)
    } else {
        Object::String(utf16_with_bom(text), StringFormat::Hexadecimal)
    }
}

fn utf16_with_bom(text: &str) -> Vec<u8> {
    [0xfe, 0xff]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
        .collect()
}

fn write_indirect(out: &mut Vec<u8>, id: ObjectId, object: &Object) -> Result<(), DocumentError> {
    put(out, format_args!("{} {} obj\n", id.0, id.1));
    write_object(out, object)?;
    out.extend_from_slice(b"\nendobj\n");
    Ok(())
}

/// Serializes a direct object (7.3). Streams cannot be direct objects and
/// are refused.
fn write_object(out: &mut Vec<u8>, object: &Object) -> Result<(), DocumentError> {
    match object {
        Object::Null => out.extend_from_slice(b"null"),
        Object::Boolean(value) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
        Object::Integer(value) => put(out, format_args!("{value}")),
        Object::Real(value) => {
            // Display never uses an exponent, which PDF does not have.
            if value.is_finite() {
                put(out, format_args!("{value}"));
            } else {
                out.push(b'0');
            }
        }
        Object::Name(name) => {
            out.push(b'/');
            for &b in name {
                if (0x21..0x7f).contains(&b) && !b"#()<>[]{}/%".contains(&b) {
                    out.push(b);
                } else {
                    put(out, format_args!("#{b:02X}"));
                }
            }
        }
        Object::String(bytes, StringFormat::Hexadecimal) => {
            out.push(b'<');
            for b in bytes {
                put(out, format_args!("{b:02X}"));
            }
            out.push(b'>');
        }
        Object::String(bytes, StringFormat::Literal) => {
            out.push(b'(');
            for &b in bytes {
                match b {
                    b'(' | b')' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                    0x20..=0x7e => out.push(b),
                    _ => put(out, format_args!("\\{b:03o}")),
                }
            }
            out.push(b')');
        }
        Object::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_object(out, item)?;
            }
            out.push(b']');
        }
        Object::Dictionary(dict) => {
            out.extend_from_slice(b"<<");
            for (key, value) in dict.iter() {
                write_object(out, &Object::Name(key.clone()))?;
                out.push(b' ');
                write_object(out, value)?;
                out.push(b' ');
            }
            out.extend_from_slice(b">>");
        }
        Object::Reference((id, generation)) => put(out, format_args!("{id} {generation} R")),
        Object::Stream(_) => {
            return Err(DocumentError::Render(
                "sealing the PDF failed: a stream where a dictionary was expected".into(),
            ))
        }
    }
    Ok(())
}

/// Appends formatted text.
fn put(out: &mut Vec<u8>, text: std::fmt::Arguments<'_>) {
    // Writing into a Vec cannot fail.
    let _ = out.write_fmt(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(object: Object) -> String {
        let mut out = Vec::new();
        write_object(&mut out, &object).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn objects_are_written_as_pdf_syntax_escapes_them() {
        assert_eq!(written(Object::Name(b"A B#(x)".to_vec())), "/A#20B#23#28x#29");
        assert_eq!(written(Object::string_literal("a(b)\\c\n")), "(a\\(b\\)\\\\c\\012)");
        assert_eq!(written(text_string("Łódź")), "<FEFF014100F30064017A>");
        assert_eq!(written(Object::Real(0.5)), "0.5");
        let mut dict = Dictionary::new();
        dict.set("Kids", vec![Object::Reference((3, 0)), Object::Null, true.into()]);
        assert_eq!(written(Object::Dictionary(dict)), "<</Kids [3 0 R null true] >>");
    }

    #[test]
    fn consecutive_object_numbers_share_a_subsection() {
        let offsets = [((4, 0), 10), ((5, 0), 20), ((9, 0), 30), ((10, 0), 40), ((12, 0), 50)];
        assert_eq!(subsections(&offsets), [(4, 2), (9, 2), (12, 1)]);
    }
}
