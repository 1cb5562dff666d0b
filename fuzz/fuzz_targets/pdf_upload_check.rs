//! The upload check every PDF goes through (`signhook_documents::inspect`),
//! on arbitrary bytes. It must answer — a page count or an error — and
//! never panic, abort or run away with memory or time.
//!
//! Deep nesting is left to the process boundary in production (the check
//! runs in a worker process with an 8 MiB stack; overflowing it refuses the
//! upload), so here the check runs on a thread whose stack the longest
//! input cannot exhaust: what this target looks for is everything else.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    let check = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let _ = signhook_documents::inspect(&data);
        })
        .expect("a thread starts");
    if let Err(panic) = check.join() {
        std::panic::resume_unwind(panic);
    }
});
