//! Helpers shared by the unit tests.

use proptest::prelude::*;

/// Small edits of a text: up to 11 bytes cut somewhere and a few characters (printable
/// ASCII with newlines and tabs, or anything printable) put in their place.
pub(crate) fn edits(base: &'static str) -> impl Strategy<Value = String> {
    (0..base.len(), 0usize..12, "[ -~\n\t]{0,6}|\\PC{0,3}").prop_filter_map(
        "edits start and end on character boundaries",
        move |(at, cut, insert)| {
            let end = (at + cut).min(base.len());
            (base.is_char_boundary(at) && base.is_char_boundary(end)).then(|| {
                let mut text = base.to_string();
                text.replace_range(at..end, &insert);
                text
            })
        },
    )
}

/// Whether a 1-based line number is a place in `text` (its end included).
pub(crate) fn within(text: &str, line: u64) -> bool {
    line >= 1 && line <= text.lines().count() as u64 + 1
}
