//! The fonts the generated pages are set in: the built-in ones (DejaVu Sans,
//! then Droid Sans Fallback for Chinese and Japanese; see
//! `fonts/README.md` for where they come from and their licences) and any
//! an operator prefers.
//!
//! A font is checked once, when it becomes a [`FontFile`]; past that it is
//! known to parse, for shaping and for embedding alike.

use std::fmt;

/// DejaVu Sans 2.37: Latin, Greek, Cyrillic, Arabic, Hebrew.
static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// Droid Sans Fallback 1.00c: Chinese and Japanese (not Korean Hangul).
static DROID_SANS_FALLBACK: &[u8] = include_bytes!("../fonts/DroidSansFallbackFull.ttf");

/// Why a file cannot be used as a font.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FontError {
    /// The bytes do not parse as a font.
    #[error("it is not a TrueType or OpenType font (.ttf, .otf, or the first font of a .ttc)")]
    NotAFont,
    /// The font has no Unicode character map, so no text can be set in it.
    #[error("the font maps no Unicode characters to its glyphs")]
    NoUnicodeMap,
}

/// One font, checked: a TrueType or OpenType font (the first one of a
/// collection) with a Unicode character map.
#[derive(Clone)]
pub struct FontFile {
    data: krilla::Data,
    /// For embedding; made once, since making it hashes the whole file.
    font: krilla::text::Font,
    family: String,
}

impl FontFile {
    /// Checks `bytes` and keeps them.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, FontError> {
        Self::from_data(bytes.into())
    }

    fn builtin(bytes: &'static [u8]) -> Self {
        // Our own files, checked by the tests.
        Self::from_data(bytes.into()).expect("a built-in font parses")
    }

    fn from_data(data: krilla::Data) -> Result<Self, FontError> {
        let face = rustybuzz::Face::from_slice(data.as_ref(), 0).ok_or(FontError::NotAFont)?;
        let unicode = face
            .tables()
            .cmap
            .is_some_and(|cmap| cmap.subtables.into_iter().any(|table| table.is_unicode()));
        if !unicode {
            return Err(FontError::NoUnicodeMap);
        }
        let family = face
            .names()
            .into_iter()
            .filter(|name| name.name_id == rustybuzz::ttf_parser::name_id::FAMILY && name.is_unicode())
            .find_map(|name| name.to_string())
            .unwrap_or_else(|| "unnamed font".to_owned());
        let font = krilla::text::Font::new(data.clone(), 0).ok_or(FontError::NotAFont)?;
        Ok(Self { data, font, family })
    }

    /// The font's family name, as it names itself.
    pub fn family(&self) -> &str {
        &self.family
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    pub(crate) fn krilla_font(&self) -> &krilla::text::Font {
        &self.font
    }
}

impl fmt::Debug for FontFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FontFile")
            .field("family", &self.family)
            .field("bytes", &self.data.as_ref().len())
            .finish()
    }
}

/// The fonts the signature page and the audit certificate are set in, in
/// the order they are tried: each run of text is set in the first font that
/// has glyphs for its characters.
///
/// ```
/// use signhook_documents::Fonts;
/// let fonts = Fonts::builtin();
/// assert_eq!(fonts.families(), ["DejaVu Sans", "Droid Sans Fallback"]);
/// ```
#[derive(Debug, Clone)]
pub struct Fonts {
    files: Vec<FontFile>,
}

impl Fonts {
    /// DejaVu Sans, then Droid Sans Fallback: Latin, Greek, Cyrillic,
    /// Arabic, Hebrew, Chinese and Japanese. (Korean Hangul needs a
    /// preferred font: Droid Sans Fallback has almost none.)
    pub fn builtin() -> Self {
        Self {
            files: vec![FontFile::builtin(DEJAVU_SANS), FontFile::builtin(DROID_SANS_FALLBACK)],
        }
    }

    /// The operator's fonts, in their order, tried before the built-in ones.
    pub fn preferring(preferred: Vec<FontFile>) -> Self {
        let mut files = preferred;
        files.extend(Self::builtin().files);
        Self { files }
    }

    /// The family names of the fonts, in the order they are tried.
    pub fn families(&self) -> Vec<&str> {
        self.files.iter().map(FontFile::family).collect()
    }

    pub(crate) fn files(&self) -> &[FontFile] {
        &self.files
    }
}

impl Default for Fonts {
    fn default() -> Self {
        Self::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_fonts_parse_and_cover_their_scripts() {
        let fonts = Fonts::builtin();
        let covers = |index: usize, text: &str| {
            let face = rustybuzz::Face::from_slice(fonts.files()[index].bytes(), 0).unwrap();
            text.chars()
                .filter(|c| !c.is_whitespace())
                .all(|c| face.glyph_index(c).is_some())
        };
        assert!(covers(0, "Łukasz Żółć Αλέξανδρος Дмитрий محمد الأحمد דוד כהן — €"));
        assert!(covers(1, "王小明 合同 李雷 やまだ カタカナ"));
        assert!(!covers(1, "김민준"), "if Hangul is covered now, say so in the docs");
        assert!(!covers(0, "王"), "DejaVu Sans has no CJK, so the fallback is needed");
    }

    #[test]
    fn what_is_not_a_font_is_refused() {
        assert!(matches!(
            FontFile::parse(b"not a font".to_vec()),
            Err(FontError::NotAFont)
        ));
        assert!(matches!(FontFile::parse(Vec::new()), Err(FontError::NotAFont)));
    }

    #[test]
    fn preferred_fonts_come_first() {
        let droid = FontFile::parse(DROID_SANS_FALLBACK.to_vec()).unwrap();
        assert_eq!(
            Fonts::preferring(vec![droid]).families(),
            ["Droid Sans Fallback", "DejaVu Sans", "Droid Sans Fallback"]
        );
    }
}
