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

/// A line of a step's output as a terminal is shown it: colours (`ESC [ … m`) kept,
/// every other escape sequence (a title, a link, the clipboard, cursor movement) and
/// control character (a carriage return, a backspace, a bell) dropped, tabs kept, so
/// that output cannot rewrite what the operator sees or reaches beyond the line.
pub fn for_terminal(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    for (range, piece) in spans(line) {
        match piece {
            Piece::Char(c) if c.is_control() && c != '\t' => {}
            Piece::Csi { last: 'm', .. } | Piece::Char(_) => out.push_str(&line[range]),
            Piece::Csi { .. } | Piece::Other => {}
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{Piece, pieces};

    #[test]
    fn terminals_are_shown_colours_and_text_only() {
        let line = "a\x1b[1;31mred\x1b[0m\x1b]0;TITLE\x07\x1b]52;c;Y2xpcA==\x07\x1b[2J\x1b[Hb\rc\x08\td";
        assert_eq!(super::for_terminal(line), "a\x1b[1;31mred\x1b[0mbc\td");
        assert!(matches!(super::for_terminal("plain\ttext"), std::borrow::Cow::Borrowed(_)));
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
