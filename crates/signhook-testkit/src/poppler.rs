//! Reading a PDF as a reader does, with poppler's command-line tools
//! (Debian's `poppler-utils`, which `.ci/run` installs): what a person who
//! copies the text gets, and which fonts the file embeds.

use std::io::Write;
use std::process::{Command, Stdio};

/// The text of `pdf`, in reading order, as `pdftotext -enc UTF-8` gives it
/// (pages separated by form feeds).
///
/// Panics, saying what to install, when poppler is missing: a test that
/// reads PDFs is never skipped.
pub fn pdf_text(pdf: &[u8]) -> String {
    run("pdftotext", &["-enc", "UTF-8", "-", "-"], pdf)
}

/// The text of page `page` (1-based) of `pdf`, as [`pdf_text`] gives it.
pub fn pdf_page_text(pdf: &[u8], page: u32) -> String {
    let page = page.to_string();
    run("pdftotext", &["-enc", "UTF-8", "-f", &page, "-l", &page, "-", "-"], pdf)
}

/// The font table of `pdf` as `pdffonts` prints it: one row per font, with
/// its name (`ABCDEF+DejaVuSans` for a subset), type, encoding, and whether
/// it is embedded, a subset, and has a ToUnicode map.
pub fn pdf_fonts(pdf: &[u8]) -> String {
    // pdffonts reads no stdin: the file goes through a temporary copy.
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(pdf).expect("writing the temporary PDF");
    let path = file.path().to_str().expect("a UTF-8 temporary path").to_owned();
    run("pdffonts", &[&path], &[])
}

/// Renders page `page` (1-based) of `pdf` as a PNG at `dpi` to `png`, with
/// `pdftoppm`, for a person to look at.
pub fn save_page_as_png(pdf: &[u8], page: u32, dpi: u32, png: &std::path::Path) {
    let page = page.to_string();
    let dpi = dpi.to_string();
    let stem = png.with_extension("");
    let stem = stem.to_str().expect("a UTF-8 path");
    let args = ["-png", "-singlefile", "-r", &dpi, "-f", &page, "-l", &page, "-", stem];
    run("pdftoppm", &args, pdf);
}

fn run(program: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install poppler's tools (`apt-get install -y poppler-utils` on Debian)")
        });
    let mut input = child.stdin.take().expect("a piped stdin");
    let stdin = stdin.to_vec();
    // Written from a thread so that a large output cannot block the write.
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().expect("waiting for poppler");
    let written = writer.join().expect("the writer thread");
    // Its complaint first: a program that failed stops reading its input.
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    written.expect("writing to poppler");
    String::from_utf8(output.stdout).expect("poppler writes UTF-8 with -enc UTF-8")
}
