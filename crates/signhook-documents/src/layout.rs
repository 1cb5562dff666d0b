//! Typesetting plain text onto A4 pages, in any script, with krilla.
//!
//! The pages we generate (the signature page, the audit certificate) are
//! lists of left-aligned lines, so this is deliberately not a layout engine:
//! callers build [`Block`]s of text, [`Typesetter::paginate`] wraps them into
//! lines and cuts those into pages, and [`Typesetter::render`] writes the
//! pages as a standalone PDF.
//!
//! A line is set in three steps:
//!
//! 1. **Bidi.** The Unicode bidirectional algorithm (UAX #9, `unicode-bidi`)
//!    orders the line's runs visually, in a left-to-right paragraph (the
//!    pages are in English): an Arabic or Hebrew name reads right to left
//!    inside it.
//! 2. **Fallback.** Each run is cut where the font changes: every character
//!    goes to the first font that has a glyph for it, except that spaces and
//!    combining marks stay with the font before them when it has them.
//! 3. **Shaping.** rustybuzz shapes each piece in its direction, so Arabic
//!    letters take their joined forms and ligatures, marks find their place,
//!    and widths are the font's real advances (wrapping measures with them).
//!
//! krilla then embeds a subset of each font used, with a ToUnicode map built
//! from the text each glyph stands for.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;

use krilla::geom::Point;
use krilla::page::PageSettings;
use krilla::paint::{Fill, LineJoin, Stroke};
use krilla::text::{GlyphId, KrillaGlyph};
use unicode_bidi::{BidiInfo, Level};

use crate::fonts::Fonts;
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
/// The outline drawn around bold glyphs, as a fraction of the font size.
/// Bold is synthetic (fill and stroke) because the fonts have no bold weight
/// we ship, and an operator's font may have none either.
const BOLD_STROKE: f32 = 0.04;

/// How heavy a line is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weight {
    Regular,
    Bold,
}

/// One line of text, already short enough to fit between the margins.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    weight: Weight,
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

/// A paragraph of a block, not yet wrapped.
#[derive(Debug, Clone)]
struct Paragraph {
    weight: Weight,
    size: f32,
    indent: f32,
    text: String,
}

/// Paragraphs that belong together (one signer, one trail entry) and move to
/// the next page as a whole when they do not fit at the bottom of this one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Block {
    paragraphs: Vec<Paragraph>,
    gap: f32,
}

impl Block {
    /// A block separated from the previous one by `gap` points.
    pub(crate) fn new(gap: f32) -> Self {
        Block {
            paragraphs: Vec::new(),
            gap,
        }
    }

    /// Appends `text`, to be wrapped to the width left by `indent`.
    pub(crate) fn text(mut self, weight: Weight, size: f32, indent: f32, text: &str) -> Self {
        self.paragraphs.push(Paragraph {
            weight,
            size,
            indent,
            text: displayable(text),
        });
        self
    }

    /// Appends the paragraphs of `other`, which then move between pages with
    /// this block's.
    pub(crate) fn append(mut self, other: Block) -> Self {
        self.paragraphs.extend(other.paragraphs);
        self
    }
}

/// `text` as it is shown: control characters become spaces, and the
/// explicit bidi embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069) are dropped, so that a name cannot reorder the rest of
/// the line it is printed on.
fn displayable(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One font as the typesetter uses it.
struct Face<'f> {
    shaper: rustybuzz::Face<'f>,
    font: &'f krilla::text::Font,
    units_per_em: f32,
}

/// A piece of a line set in one font, in one direction.
struct Run<'f> {
    font: &'f krilla::text::Font,
    glyphs: Vec<KrillaGlyph>,
    /// The text the glyphs' ranges point into: the piece itself, or for a
    /// right-to-left piece, the piece with its characters in visual order.
    ///
    /// Text extractors (poppler's pdftotext, pdfminer, PyMuPDF) read
    /// glyphs left to right and then reverse right-to-left words character
    /// by character. A glyph that stands for several characters (the
    /// lam-alef ligature of "الأحمد", a letter and its vowel mark) must
    /// therefore map to them in visual order too, or they come out swapped.
    text: String,
    /// The advance of all glyphs, in em.
    advance: f32,
}

/// Sets lines of text in a set of fonts. Made for one document.
pub(crate) struct Typesetter<'f> {
    faces: Vec<Face<'f>>,
    /// Widths of texts already measured, in em: the signature page is laid
    /// out at several sizes, with the same texts every time.
    widths: RefCell<HashMap<String, f32>>,
}

impl<'f> Typesetter<'f> {
    pub(crate) fn new(fonts: &'f Fonts) -> Self {
        let faces = fonts
            .files()
            .iter()
            .map(|file| {
                // A `FontFile` has parsed already.
                let shaper = rustybuzz::Face::from_slice(file.bytes(), 0).expect("a checked font parses");
                Face {
                    units_per_em: shaper.units_per_em() as f32,
                    shaper,
                    font: file.krilla_font(),
                }
            })
            .collect();
        Self {
            faces,
            widths: RefCell::default(),
        }
    }

    /// Wraps the blocks into lines and cuts them into pages. A block that
    /// does not fit in the rest of a page starts a new one; a block taller
    /// than a whole page is split between lines.
    pub(crate) fn paginate(&self, blocks: &[Block]) -> Vec<Vec<Line>> {
        let mut pages = Vec::new();
        let mut page: Vec<Line> = Vec::new();
        let mut used = 0.0;
        for block in blocks {
            let lines = self.lines(block);
            let height: f32 = lines.iter().map(Line::height).sum();
            if !page.is_empty() && used + height > BODY_HEIGHT && height <= BODY_HEIGHT {
                pages.push(std::mem::take(&mut page));
                used = 0.0;
            }
            for line in lines {
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

    /// A block's paragraphs, wrapped.
    fn lines(&self, block: &Block) -> Vec<Line> {
        let mut lines = Vec::new();
        for paragraph in &block.paragraphs {
            for text in self.wrap(&paragraph.text, paragraph.size, BODY_WIDTH - paragraph.indent) {
                lines.push(Line {
                    weight: paragraph.weight,
                    size: paragraph.size,
                    indent: paragraph.indent,
                    text,
                    gap_before: if lines.is_empty() { block.gap } else { 0.0 },
                });
            }
        }
        lines
    }

    /// Writes `pages` as a PDF of A4 pages, each with `footer(page_index,
    /// page_count)` at the bottom. Deterministic: krilla derives the
    /// document id and the subset tags from the content, and no date is set.
    pub(crate) fn render(
        &self,
        title: &str,
        pages: &[Vec<Line>],
        footer: impl Fn(usize, usize) -> String,
    ) -> Result<Vec<u8>, DocumentError> {
        let mut document = krilla::Document::new();
        document.set_metadata(
            krilla::metadata::Metadata::new()
                .title(title.to_owned())
                .language("en".to_owned())
                .creator("Signhook".to_owned()),
        );
        let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).expect("A4 is a valid page size");
        for (index, lines) in pages.iter().enumerate() {
            let mut page = document.start_page_with(settings.clone());
            let mut surface = page.surface();
            // Black; set, since a stroke alone (bold) would otherwise not fill.
            surface.set_fill(Some(Fill::default()));
            let mut baseline = MARGIN;
            for line in lines {
                baseline += line.height();
                self.draw(
                    &mut surface,
                    line.weight,
                    line.size,
                    MARGIN + line.indent,
                    baseline,
                    &line.text,
                );
            }
            let footer = displayable(&footer(index, pages.len()));
            self.draw(
                &mut surface,
                Weight::Regular,
                8.0,
                MARGIN,
                PAGE_HEIGHT - MARGIN + 10.0,
                &footer,
            );
            surface.finish();
            page.finish();
        }
        document
            .finish()
            .map_err(|e| DocumentError::Render(format!("writing the PDF failed: {e:?}")))
    }

    /// Draws one line with its left end at `x` and its baseline at `y`
    /// (krilla measures from the top of the page).
    fn draw(&self, surface: &mut krilla::surface::Surface, weight: Weight, size: f32, x: f32, y: f32, text: &str) {
        surface.set_stroke(match weight {
            Weight::Regular => None,
            Weight::Bold => Some(Stroke {
                width: size * BOLD_STROKE,
                line_join: LineJoin::Round,
                ..Stroke::default()
            }),
        });
        let mut x = x;
        for run in self.runs(text) {
            surface.draw_glyphs(
                Point::from_xy(x, y),
                &run.glyphs,
                run.font.clone(),
                &run.text,
                size,
                false,
            );
            x += run.advance * size;
        }
        surface.set_stroke(None);
    }

    /// The width of `text` set at `size`, in points.
    pub(crate) fn width(&self, text: &str, size: f32) -> f32 {
        if let Some(em) = self.widths.borrow().get(text) {
            return em * size;
        }
        let em: f32 = self.runs(text).iter().map(|run| run.advance).sum();
        self.widths.borrow_mut().insert(text.to_owned(), em);
        em * size
    }

    /// Word-wraps `text` to `width`. Words are split at spaces only, so an
    /// e-mail address or a hash stays whole (and extractable) whenever it
    /// fits on a line; a single word longer than a line (a pathological
    /// user agent) is cut where it reaches the margin.
    pub(crate) fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let fits = |candidate: &str| self.width(candidate, size) <= width;
        let mut lines = Vec::new();
        let mut current = String::new();
        for word in text.split_whitespace() {
            let candidate = if current.is_empty() {
                word.to_owned()
            } else {
                format!("{current} {word}")
            };
            if fits(&candidate) {
                current = candidate;
                continue;
            }
            if !current.is_empty() {
                lines.push(std::mem::take(&mut current));
            }
            let mut rest = word;
            while !fits(rest) {
                let cut = longest_fitting_prefix(rest, fits);
                lines.push(rest[..cut].to_owned());
                rest = &rest[cut..];
            }
            current = rest.to_owned();
        }
        if !current.is_empty() || lines.is_empty() {
            lines.push(current);
        }
        lines
    }

    /// The runs of a line, in visual order, left to right.
    fn runs(&self, line: &str) -> Vec<Run<'f>> {
        let mut runs = Vec::new();
        if line.is_empty() {
            return runs;
        }
        let bidi = BidiInfo::new(line, Some(Level::ltr()));
        for paragraph in &bidi.paragraphs {
            let (levels, level_runs) = bidi.visual_runs(paragraph, paragraph.range.clone());
            for range in level_runs {
                let rtl = levels[range.start].is_rtl();
                let mut pieces = self.pieces(&line[range.clone()]);
                if rtl {
                    pieces.reverse();
                }
                let start = range.start;
                for (face, piece) in pieces {
                    let piece = (start + piece.start)..(start + piece.end);
                    runs.push(self.shape(face, &line[piece], rtl));
                }
            }
        }
        runs
    }

    /// Cuts `text` (of one direction) where the font changes: each
    /// character goes to the first font that has it, but spaces and marks
    /// stay with the font before them when it has them. A character no
    /// font has stays where it is (and shows as the font's missing glyph).
    fn pieces(&self, text: &str) -> Vec<(usize, Range<usize>)> {
        let mut pieces: Vec<(usize, Range<usize>)> = Vec::new();
        for (at, c) in text.char_indices() {
            let has = |face: usize| self.faces[face].shaper.glyph_index(c).is_some();
            let current = pieces.last().map(|(face, _)| *face);
            let face = match current {
                Some(face) if clings(c) && has(face) => face,
                _ => (0..self.faces.len()).find(|&face| has(face)).or(current).unwrap_or(0),
            };
            let end = at + c.len_utf8();
            match pieces.last_mut() {
                Some((last, range)) if *last == face => range.end = end,
                _ => pieces.push((face, at..end)),
            }
        }
        pieces
    }

    /// Shapes `text` in one font and direction.
    fn shape(&self, face: usize, text: &str, rtl: bool) -> Run<'f> {
        let face = &self.faces[face];
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.guess_segment_properties();
        buffer.set_direction(if rtl {
            rustybuzz::Direction::RightToLeft
        } else {
            rustybuzz::Direction::LeftToRight
        });
        let shaped = rustybuzz::shape(&face.shaper, &[], buffer);
        let infos = shaped.glyph_infos();
        // A glyph's cluster is the byte offset of the first character it
        // stands for; its cluster runs to the next cluster's start.
        let mut starts: Vec<usize> = infos.iter().map(|info| info.cluster as usize).collect();
        starts.sort_unstable();
        starts.dedup();
        let cluster = |start: usize| {
            let next = starts.partition_point(|&s| s <= start);
            start..starts.get(next).copied().unwrap_or(text.len())
        };
        let em = |units: i32| units as f32 / face.units_per_em;
        let mut advance = 0.0;
        let glyphs = infos
            .iter()
            .zip(shaped.glyph_positions())
            .map(|(info, position)| {
                advance += em(position.x_advance);
                let logical = cluster(info.cluster as usize);
                // In the reversed text, a range [s, e) sits at [len - e, len - s).
                let range = if rtl {
                    (text.len() - logical.end)..(text.len() - logical.start)
                } else {
                    logical
                };
                KrillaGlyph::new(
                    GlyphId::new(info.glyph_id),
                    em(position.x_advance),
                    em(position.x_offset),
                    em(position.y_offset),
                    em(position.y_advance),
                    range,
                    None,
                )
            })
            .collect();
        Run {
            font: face.font,
            glyphs,
            text: if rtl {
                text.chars().rev().collect()
            } else {
                text.to_owned()
            },
            advance,
        }
    }
}

/// Whether `c` stays in the font of the characters before it: spaces,
/// combining marks, joiners and variation selectors belong with their
/// neighbours, not with whichever font comes first.
fn clings(c: char) -> bool {
    c.is_whitespace()
        || matches!(c,
            '\u{0300}'..='\u{036F}'   // combining diacritical marks
            | '\u{0483}'..='\u{0489}' // Cyrillic
            | '\u{0591}'..='\u{05C7}' // Hebrew points and accents
            | '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{06D6}'..='\u{06ED}' // Arabic
            | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}'
            | '\u{200C}' | '\u{200D}' // zero-width (non-)joiner
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
        )
}

/// The byte length of the longest prefix of `word`, at least one character,
/// for which `fits` holds (`fits` grows false with length, so a binary
/// search over the character boundaries finds it).
fn longest_fitting_prefix(word: &str, fits: impl Fn(&str) -> bool) -> usize {
    let ends: Vec<usize> = word.char_indices().map(|(at, c)| at + c.len_utf8()).collect();
    // Invariant: the prefix ending at ends[low] fits (or low is 0, the
    // one-character minimum); the one ending at ends[high] does not.
    let (mut low, mut high) = (0, ends.len() - 1);
    while high - low > 1 {
        let middle = (low + high) / 2;
        if fits(&word[..ends[middle]]) {
            low = middle;
        } else {
            high = middle;
        }
    }
    ends[low]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typesetter(fonts: &Fonts) -> Typesetter<'_> {
        Typesetter::new(fonts)
    }

    #[test]
    fn wrapping_keeps_words_whole_and_every_line_inside_the_margins() {
        let fonts = Fonts::builtin();
        let ts = typesetter(&fonts);
        let user_agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0";
        let lines = ts.wrap(user_agent, 10.0, 300.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.join(" "), user_agent);
        assert!(lines.iter().all(|line| ts.width(line, 10.0) <= 300.0));
        // Greedy: no line could have taken the next one's first word.
        for pair in lines.windows(2) {
            let first_word = pair[1].split(' ').next().unwrap();
            assert!(ts.width(&format!("{} {first_word}", pair[0]), 10.0) > 300.0);
        }
    }

    #[test]
    fn a_word_longer_than_a_line_is_cut_at_the_margin() {
        let fonts = Fonts::builtin();
        let ts = typesetter(&fonts);
        for word in ["x".repeat(500), "王".repeat(200), "ж".repeat(300)] {
            let lines = ts.wrap(&word, 10.0, 100.0);
            assert!(lines.len() > 1);
            assert_eq!(lines.concat(), word);
            assert!(lines.iter().all(|line| ts.width(line, 10.0) <= 100.0));
            // Each cut line is full: one more character would not fit.
            let first = &lines[0];
            let next = lines[1].chars().next().unwrap();
            assert!(ts.width(&format!("{first}{next}"), 10.0) > 100.0);
        }
    }

    #[test]
    fn widths_are_the_fonts_advances() {
        let fonts = Fonts::builtin();
        let ts = typesetter(&fonts);
        // DejaVu Sans is wider than Helvetica: "0" is 1303 of 2048 units.
        let zero = ts.width("0", 1000.0);
        assert!((zero - 1303.0 / 2048.0 * 1000.0).abs() < 0.01, "{zero}");
        assert!((ts.width(&"0".repeat(64), 9.0) - 64.0 * zero * 9.0 / 1000.0).abs() < 0.01);
        // A CJK ideograph is a full em in Droid Sans Fallback.
        assert!((ts.width("王", 10.0) - 10.0).abs() < 0.01, "{}", ts.width("王", 10.0));
        assert_eq!(ts.width("", 10.0), 0.0);
    }

    #[test]
    fn a_sha256_fits_on_one_line_at_nine_points() {
        let fonts = Fonts::builtin();
        let ts = typesetter(&fonts);
        let width = BODY_WIDTH - 12.0;
        for hash in ["f".repeat(64), "0".repeat(64), "9e".repeat(32)] {
            assert!(ts.width(&format!("SHA-256: {hash}"), 9.0) < width);
        }
    }

    #[test]
    fn each_run_goes_to_the_first_font_that_has_it() {
        let fonts = Fonts::builtin();
        let ts = typesetter(&fonts);
        let pieces = |text: &str| -> Vec<(usize, String)> {
            ts.pieces(text)
                .into_iter()
                .map(|(face, range)| (face, text[range].to_owned()))
                .collect()
        };
        assert_eq!(
            pieces("6. 王小明 <wang@example.cn>"),
            [
                (0, "6. ".to_owned()),
                (1, "王小明 ".to_owned()),
                (0, "<wang@example.cn>".to_owned())
            ]
        );
        assert_eq!(pieces("Łukasz Żółć"), [(0, "Łukasz Żółć".to_owned())]);
    }

    #[test]
    fn right_to_left_runs_are_shaped_joined_and_placed_in_visual_order() {
        let fonts = Fonts::builtin();
        let ts = typesetter(&fonts);
        let runs = ts.runs("1. محمد الأحمد ok");
        let texts: Vec<&str> = runs.iter().map(|run| run.text.as_str()).collect();
        // Left to right on the page: the number, the name with its
        // characters in visual order, then the Latin word.
        assert_eq!(texts, ["1. ", "دمحألا دمحم", " ok"]);
        let arabic = &runs[1];
        // Joined forms and the lam-alef ligature: fewer glyphs than letters,
        // and none of them the letters' isolated (nominal) glyphs.
        let face = &ts.faces[0].shaper;
        let nominal: Vec<u32> = "محمد الأحمد"
            .chars()
            .filter_map(|c| face.glyph_index(c))
            .map(|g| u32::from(g.0))
            .collect();
        assert!(arabic.glyphs.len() < "محمد الأحمد".chars().count());
        let joined = arabic
            .glyphs
            .iter()
            .filter(|g| !nominal.contains(&g.glyph_id.to_u32()))
            .count();
        assert!(joined >= 6, "{joined} joined glyphs");
        // Each glyph points at its characters, in visual order.
        let ligature = arabic
            .glyphs
            .iter()
            .find(|g| g.text_range.len() > 2)
            .expect("the lam-alef ligature stands for two letters");
        assert_eq!(&arabic.text[ligature.text_range.clone()], "أل");
    }

    #[test]
    fn bidi_controls_are_dropped_and_control_characters_become_spaces() {
        assert_eq!(displayable("Ada\u{202E}moc.evil\u{202C}\tx"), "Adamoc.evil x");
    }

    #[test]
    fn an_empty_document_still_gets_one_page() {
        let fonts = Fonts::builtin();
        assert_eq!(typesetter(&fonts).paginate(&[]).len(), 1);
    }
}
