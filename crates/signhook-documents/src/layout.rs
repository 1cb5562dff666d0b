//! Typesetting plain text onto A4 pages with the two standard Helvetica fonts.
//!
//! The pages we generate (the signature page, the audit certificate) are
//! lists of left-aligned lines, so this is deliberately not a layout engine:
//! callers build [`Block`]s of wrapped [`Line`]s, [`paginate`] cuts them into
//! pages, and [`add_pages`] writes one content stream per page. Every line is
//! its own `BT … ET` object because lopdf's text extraction ends a line at
//! `ET`; that is what makes the generated text come back line by line.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, ObjectId, Stream};

use crate::DocumentError;

/// A4 portrait, in PDF points.
pub(crate) const PAGE_WIDTH: f32 = 595.0;
/// A4 portrait, in PDF points.
pub(crate) const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
/// Room kept free at the bottom for the page footer.
const FOOTER_SPACE: f32 = 20.0;
/// Line height as a multiple of the font size.
const LEADING: f32 = 1.3;
/// The height available to body lines on one page.
pub(crate) const BODY_HEIGHT: f32 = PAGE_HEIGHT - 2.0 * MARGIN - FOOTER_SPACE;
const BODY_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;

/// Advance widths (1/1000 em) of ASCII 32..=126: for each character the wider
/// of Helvetica and Helvetica-Bold (Adobe's AFM files), so one table measures
/// both fonts and a line never runs past the margin in either.
#[rustfmt::skip]
const WIDTHS: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, // space../
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // 0..?
    1015, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // @..O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // P.._
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // `..o
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,      // p..~
];
/// Width assumed for anything outside ASCII: as wide as an em dash, the widest
/// WinAnsi glyphs, so accented names are over- rather than under-estimated.
const NON_ASCII_WIDTH: u16 = 1000;

/// The two standard (non-embedded) fonts every page uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource_name(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
        }
    }
}

/// One line of text, already short enough to fit between the margins.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    font: Font,
    size: f32,
    indent: f32,
    text: String,
    /// Extra space above the line, used to separate blocks and sections.
    gap_before: f32,
}

impl Line {
    fn height(&self) -> f32 {
        self.gap_before + self.size * LEADING
    }
}

/// Lines that belong together (one signer, one trail entry) and move to the
/// next page as a whole when they do not fit at the bottom of this one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Block {
    lines: Vec<Line>,
    gap: f32,
}

impl Block {
    /// A block separated from the previous one by `gap` points.
    pub(crate) fn new(gap: f32) -> Self {
        Block { lines: Vec::new(), gap }
    }

    /// Appends `text`, wrapped to the width left by `indent`.
    pub(crate) fn text(mut self, font: Font, size: f32, indent: f32, text: &str) -> Self {
        for wrapped in wrap(text, size, BODY_WIDTH - indent) {
            let gap_before = if self.lines.is_empty() { self.gap } else { 0.0 };
            self.lines.push(Line {
                font,
                size,
                indent,
                text: wrapped,
                gap_before,
            });
        }
        self
    }

    /// Appends the lines of `other`, which then move between pages with
    /// this block's.
    pub(crate) fn append(mut self, other: Block) -> Self {
        self.lines.extend(other.lines);
        self
    }

    fn height(&self) -> f32 {
        self.lines.iter().map(Line::height).sum()
    }
}

/// Cuts blocks into pages. A block that does not fit in the rest of a page
/// starts a new one; a block taller than a whole page is split between lines.
pub(crate) fn paginate(blocks: Vec<Block>) -> Vec<Vec<Line>> {
    let mut pages = Vec::new();
    let mut page: Vec<Line> = Vec::new();
    let mut used = 0.0;
    for block in blocks {
        let height = block.height();
        if !page.is_empty() && used + height > BODY_HEIGHT && height <= BODY_HEIGHT {
            pages.push(std::mem::take(&mut page));
            used = 0.0;
        }
        for line in block.lines {
            if !page.is_empty() && used + line.height() > BODY_HEIGHT {
                pages.push(std::mem::take(&mut page));
                used = 0.0;
            }
            used += line.height();
            page.push(line);
        }
    }
    if !page.is_empty() || pages.is_empty() {
        pages.push(page);
    }
    pages
}

/// The width of `text` in points, at `size`, measured conservatively.
fn text_width(text: &str, size: f32) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match c {
            ' '..='~' => u32::from(WIDTHS[c as usize - 32]),
            _ => u32::from(NON_ASCII_WIDTH),
        })
        .sum();
    units as f32 * size / 1000.0
}

/// Word-wraps `text` to `width`. Words are split at spaces only, so an e-mail
/// address or a hash stays whole (and extractable) whenever it fits on a
/// line; a single word longer than a line (a pathological user agent) is cut
/// where it reaches the margin.
fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if text_width(&candidate, size) <= width {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        for c in word.chars() {
            current.push(c);
            if text_width(&current, size) > width && current.chars().count() > 1 {
                current.pop();
                lines.push(std::mem::replace(&mut current, c.to_string()));
            }
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

/// Encodes `text` in WinAnsiEncoding (Windows-1252), the encoding we declare
/// for both fonts. Latin-1 maps to itself, the Windows-1252 extras (dashes,
/// curly quotes, €) to their code points in 0x80..=0x9F, control characters
/// to a space and everything else to '?'. Parentheses and backslashes are
/// left as they are: lopdf escapes them when it writes the string literal.
pub(crate) fn win_ansi(text: &str) -> Vec<u8> {
    #[rustfmt::skip]
    const EXTRAS: [(char, u8); 27] = [
        ('€', 0x80), ('‚', 0x82), ('ƒ', 0x83), ('„', 0x84), ('…', 0x85), ('†', 0x86), ('‡', 0x87), ('ˆ', 0x88), ('‰', 0x89),
        ('Š', 0x8A), ('‹', 0x8B), ('Œ', 0x8C), ('Ž', 0x8E), ('‘', 0x91), ('’', 0x92), ('“', 0x93), ('”', 0x94), ('•', 0x95),
        ('–', 0x96), ('—', 0x97), ('˜', 0x98), ('™', 0x99), ('š', 0x9A), ('›', 0x9B), ('œ', 0x9C), ('ž', 0x9E), ('Ÿ', 0x9F),
    ];
    text.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            // A no-break space and a soft hyphen read back as their plain forms.
            '\u{A0}' => b' ',
            '\u{AD}' => b'-',
            '\u{A1}'..='\u{FF}' => c as u8,
            c if c.is_control() => b' ',
            c => EXTRAS
                .iter()
                .find(|(extra, _)| *extra == c)
                .map_or(b'?', |&(_, byte)| byte),
        })
        .collect()
}

/// Adds one A4 page per entry of `pages` to `doc` as kids of `parent`, each
/// with `footer(page_index, page_count)` at the bottom, and returns their ids
/// in order. The caller links them into the `Kids` of `parent`.
pub(crate) fn add_pages(
    doc: &mut Document,
    parent: ObjectId,
    pages: &[Vec<Line>],
    footer: impl Fn(usize, usize) -> String,
) -> Result<Vec<ObjectId>, DocumentError> {
    let font = |base: &str| {
        dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => base,
            "Encoding" => "WinAnsiEncoding",
        }
    };
    let regular = doc.add_object(font("Helvetica"));
    let bold = doc.add_object(font("Helvetica-Bold"));
    let resources = doc.add_object(dictionary! {
        "Font" => dictionary! {
            Font::Regular.resource_name() => regular,
            Font::Bold.resource_name() => bold,
        },
    });

    let mut ids = Vec::with_capacity(pages.len());
    for (index, lines) in pages.iter().enumerate() {
        let mut operations = Vec::new();
        let mut y = PAGE_HEIGHT - MARGIN;
        for line in lines {
            y -= line.height();
            show_text(
                &mut operations,
                line.font,
                line.size,
                MARGIN + line.indent,
                y,
                &line.text,
            );
        }
        let footer = footer(index, pages.len());
        show_text(&mut operations, Font::Regular, 8.0, MARGIN, MARGIN - 10.0, &footer);

        let content = Content { operations }
            .encode()
            .map_err(|e| DocumentError::Render(format!("encoding a page's content stream failed: {e}")))?;
        let content = doc.add_object(Stream::new(dictionary! {}, content));
        ids.push(doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => parent,
            "MediaBox" => vec![0.into(), 0.into(), PAGE_WIDTH.into(), PAGE_HEIGHT.into()],
            "Resources" => resources,
            "Contents" => content,
        }));
    }
    Ok(ids)
}

fn show_text(operations: &mut Vec<Operation>, font: Font, size: f32, x: f32, y: f32, text: &str) {
    operations.extend([
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec![Object::Name(font.resource_name().into()), size.into()]),
        Operation::new("Td", vec![x.into(), y.into()]),
        Operation::new("Tj", vec![Object::string_literal(win_ansi(text))]),
        Operation::new("ET", vec![]),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_whole_and_every_line_inside_the_margins() {
        let user_agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0";
        let lines = wrap(user_agent, 10.0, 300.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.join(" "), user_agent);
        assert!(lines.iter().all(|line| text_width(line, 10.0) <= 300.0));
    }

    #[test]
    fn a_word_longer_than_a_line_is_cut_at_the_margin() {
        let word = "x".repeat(500);
        let lines = wrap(&word, 10.0, 100.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), word);
        assert!(lines.iter().all(|line| text_width(line, 10.0) <= 100.0));
    }

    #[test]
    fn a_sha256_fits_on_one_line_at_nine_points() {
        assert!(text_width(&"f".repeat(64), 9.0) < BODY_WIDTH - 20.0);
        assert!(text_width(&"0".repeat(64), 9.0) < BODY_WIDTH - 20.0);
    }

    #[test]
    fn win_ansi_maps_latin_1_and_the_windows_extras_and_replaces_the_rest() {
        assert_eq!(win_ansi("Zoë — 5 €"), b"Zo\xEB \x97 5 \x80");
        assert_eq!(win_ansi("(a\\b)"), b"(a\\b)");
        assert_eq!(win_ansi("李\tx"), b"? x");
    }

    #[test]
    fn an_empty_document_still_gets_one_page() {
        assert_eq!(paginate(Vec::new()).len(), 1);
    }
}
