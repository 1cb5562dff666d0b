//! Every input of the fuzz corpus (`fuzz/corpus/pdf_upload_check`, kept by
//! the cargo-fuzz target of the same name) through the upload check, on the
//! stable toolchain and in every test run: each is answered — pages or an
//! error — without a panic. A crash the fuzzer finds is added to the corpus
//! and so becomes a regression test here.

use std::path::Path;

#[test]
fn the_fuzz_corpus_is_answered_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pdf_upload_check");
    let inputs: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(inputs.len() >= 8, "the corpus is there: {}", inputs.len());
    // As in the fuzz target: a stack no input here can exhaust (deep
    // nesting is the worker process's to contain in production).
    let checked = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut readable = 0;
            for input in &inputs {
                let bytes = std::fs::read(input).unwrap();
                if signhook_documents::inspect(&bytes).is_ok() {
                    readable += 1;
                }
            }
            (inputs.len(), readable)
        })
        .unwrap()
        .join()
        .expect("no input panics the check");
    // The hand-made seeds include readable documents.
    assert!(checked.1 > 0, "{checked:?}");
}
