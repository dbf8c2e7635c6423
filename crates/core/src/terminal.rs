//! Text meant for a terminal, read piece by piece: characters and escape sequences. The
//! web UI turns colour sequences into HTML; gate reports drop every sequence.

/// A piece of terminal text.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Char(char),
    /// A control sequence (`ESC [`): its parameters and final byte (`m` sets colours).
    Csi {
        params: String,
        last: char,
    },
    /// Any other escape sequence (an operating-system command such as a title or a link,
    /// a device string, a single character), or one cut off by the end: nothing to keep.
    Other,
}

/// The pieces of `text`, in order.
pub fn pieces(text: &str) -> impl Iterator<Item = Piece> + '_ {
    spans(text).map(|(_, piece)| piece)
}

/// The pieces of `text` with the byte range each takes.
pub fn spans(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, Piece)> + '_ {
    let mut chars = text.char_indices().peekable();
    let end =
        move |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| chars.peek().map_or(text.len(), |&(i, _)| i);
    std::iter::from_fn(move || {
        let (start, c) = chars.next()?;
        if c != '\x1b' {
            return Some((start..start + c.len_utf8(), Piece::Char(c)));
        }
        let piece = match chars.next().map(|(_, c)| c) {
            Some('[') => {
                let mut params = String::new();
                let mut last = None;
                for (_, c) in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        last = Some(c);
                        break;
                    }
                    params.push(c);
                }
                last.map_or(Piece::Other, |last| Piece::Csi { params, last })
            }
            // Strings (OSC, DCS, APC, PM): up to BEL or ESC \.
            Some(']' | 'P' | '_' | '^') => {
                while let Some((_, c)) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if(|&(_, n)| n == '\\').is_some()) {
                        break;
                    }
                }
                Piece::Other
            }
            // Intermediate bytes, then the final one: `ESC ( B` picks a character set.
            Some(c) if ('\x20'..='\x2f').contains(&c) => {
                while chars.next_if(|&(_, c)| ('\x20'..='\x2f').contains(&c)).is_some() {}
                chars.next_if(|&(_, c)| ('\x30'..='\x7e').contains(&c));
                Piece::Other
            }
            _ => Piece::Other,
        };
        Some((start..end(&mut chars), piece))
    })
}

/// Text shown on a terminal over lines of its own (a rendered approval message, manual
/// instructions, an error): every escape sequence, control character but line breaks
/// and tabs, and bidirectional override dropped, so it cannot restyle the screen, write
/// the clipboard or hide what it says.
pub fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (range, piece) in spans(text) {
        match piece {
            Piece::Char(c @ ('\n' | '\t')) => out.push(c),
            Piece::Char(c) if c.is_control() || is_bidi_control(c) => {}
            Piece::Char(_) => out.push_str(&text[range]),
            Piece::Csi { .. } | Piece::Other => {}
        }
    }
    out
}

/// Text someone typed (a comment, a reason) as one plain line on a terminal: every
/// escape sequence, control character and bidirectional override dropped (colours
/// too), line breaks and tabs made spaces, so it can neither restyle the screen nor
/// pass for lines of its own.
pub fn plain_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (range, piece) in spans(text) {
        match piece {
            Piece::Char('\n' | '\r' | '\t') => out.push(' '),
            Piece::Char(c) if c.is_control() || is_bidi_control(c) => {}
            Piece::Char(_) => out.push_str(&text[range]),
            Piece::Csi { .. } | Piece::Other => {}
        }
    }
    out
}

/// A line of a step's output as a terminal is shown it: colours and weight (`ESC [ … m`
/// with colour, bold, dim, italic, underline and reset parameters) kept and reset at the
/// line's end; every other escape sequence (a title, a link, the clipboard, cursor
/// movement, concealed or blinking text), control character (a carriage return, a
/// backspace, a bell, C1 controls) and bidirectional override dropped, tabs kept, so that
/// output cannot rewrite what the operator sees or reach beyond its line.
pub fn for_terminal(line: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| (c.is_control() && c != '\t') || is_bidi_control(c);
    if !line.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut styled = false;
    for (range, piece) in spans(line) {
        match piece {
            Piece::Char(c) if unsafe_char(c) => {}
            Piece::Char(_) => out.push_str(&line[range]),
            Piece::Csi { params, last: 'm' } if is_colour(&params) => {
                out.push_str(&line[range]);
                styled = true;
            }
            Piece::Csi { .. } | Piece::Other => {}
        }
    }
    if styled {
        out.push_str("\x1b[0m");
    }
    std::borrow::Cow::Owned(out)
}

/// Whether an SGR sequence's parameters only set colours or weight (or reset them).
fn is_colour(params: &str) -> bool {
    let mut nums = params.split([';', ':']).map(|p| if p.is_empty() { Some(0) } else { p.parse::<u16>().ok() });
    while let Some(n) = nums.next() {
        match n {
            Some(0..=4 | 21..=24 | 30..=37 | 39..=47 | 49 | 90..=97 | 100..=107) => {}
            // 256 colours (`38;5;N`) or true colour (`38;2;R;G;B`), as foreground or background.
            Some(38 | 48 | 58) => match nums.next() {
                Some(Some(5)) => _ = nums.next(),
                Some(Some(2)) => (0..3).for_each(|_| _ = nums.next()),
                _ => return false,
            },
            _ => return false,
        }
    }
    true
}

/// The characters that reorder how text is shown (right-to-left overrides, isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::{Piece, pieces};

    #[test]
    fn terminals_are_shown_colours_and_text_only() {
        let line = "a\x1b[1;31mred\x1b[0m\x1b]0;TITLE\x07\x1b]52;c;Y2xpcA==\x07\x1b[2J\x1b[Hb\rc\x08\td";
        assert_eq!(super::for_terminal(line), "a\x1b[1;31mred\x1b[0mbc\td\x1b[0m");
        // Concealed and blinking text, C1 controls and bidi overrides do not get through.
        assert_eq!(super::for_terminal("hide:\x1b[8msecret\x1b[5m!"), "hide:secret!");
        assert_eq!(super::for_terminal("a\u{9b}b\u{202e}cba"), "abcba");
        assert_eq!(super::for_terminal("\x1b[38;5;196mx"), "\x1b[38;5;196mx\x1b[0m");
        assert!(matches!(super::for_terminal("plain\ttext"), std::borrow::Cow::Borrowed(_)));
        // Typed text is one plain line: no colour either, no line of its own.
        assert_eq!(super::plain_line("\x1b[31mred\x1b[0m <b>\nline2\u{202e}x\x07"), "red <b> line2x");
    }

    #[test]
    fn sequences_are_told_from_text() {
        let got: Vec<Piece> = pieces("a\x1b[1;31mb\x1b]8;;http://x\x1b\\c\x1b]0;t\x07\x1b(d\x1b[").collect();
        assert_eq!(
            got,
            vec![
                Piece::Char('a'),
                Piece::Csi { params: "1;31".into(), last: 'm' },
                Piece::Char('b'),
                Piece::Other,
                Piece::Char('c'),
                Piece::Other,
                Piece::Other,
                Piece::Other,
            ]
        );
        let text = "é\x1b[1mx\x1b]0;t\x07\x1b(By";
        let ranges: Vec<_> = super::spans(text).map(|(r, _)| r).collect();
        assert_eq!(ranges, [0..2, 2..6, 6..7, 7..13, 13..16, 16..17]);
    }
}
