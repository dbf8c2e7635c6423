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
    let mut chars = text.chars().peekable();
    std::iter::from_fn(move || {
        let c = chars.next()?;
        if c != '\x1b' {
            return Some(Piece::Char(c));
        }
        Some(match chars.next() {
            Some('[') => {
                let mut params = String::new();
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        return Some(Piece::Csi { params, last: c });
                    }
                    params.push(c);
                }
                Piece::Other
            }
            // Strings (OSC, DCS, APC, PM): up to BEL or ESC \.
            Some(']' | 'P' | '_' | '^') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
                Piece::Other
            }
            _ => Piece::Other,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{Piece, pieces};

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
                Piece::Char('d'),
                Piece::Other,
            ]
        );
    }
}
