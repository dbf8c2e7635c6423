//! Terminal colours in log lines, as HTML: SGR sequences (bold, dim, italic, underline,
//! 8/16 colours by class, 256 and true colours by style) become spans; every other
//! escape sequence is dropped, and all text is escaped.

use std::fmt::Write;

use opsbook_core::terminal::Piece;

#[derive(Default, Clone, PartialEq)]
struct Pen {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    fg: Option<Colour>,
    bg: Option<Colour>,
}

#[derive(Clone, PartialEq)]
enum Colour {
    /// 0–15: a palette class the style sheet themes (light and dark).
    Basic(u8),
    Rgb(u8, u8, u8),
}

impl Pen {
    fn is_plain(&self) -> bool {
        *self == Pen::default()
    }

    fn open(&self, out: &mut String) {
        let mut class = Vec::new();
        let mut style = String::new();
        for (on, name) in [(self.bold, "b"), (self.dim, "d"), (self.italic, "i"), (self.underline, "u")] {
            if on {
                class.push(name.to_string());
            }
        }
        for (colour, prefix, prop) in [(&self.fg, "f", "color"), (&self.bg, "g", "background")] {
            match colour {
                Some(Colour::Basic(n)) => class.push(format!("{prefix}{n}")),
                Some(Colour::Rgb(r, g, b)) => {
                    let _ = write!(style, "{prop}:#{r:02x}{g:02x}{b:02x};");
                }
                None => {}
            }
        }
        out.push_str("<span");
        if !class.is_empty() {
            let _ = write!(out, " class=\"{}\"", class.join(" "));
        }
        if !style.is_empty() {
            let _ = write!(out, " style=\"{style}\"");
        }
        out.push('>');
    }

    /// Applies one SGR parameter list.
    fn apply(&mut self, params: &[u16]) {
        let mut i = 0;
        if params.is_empty() {
            *self = Pen::default();
        }
        while i < params.len() {
            match params[i] {
                0 => *self = Pen::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                n @ 30..=37 => self.fg = Some(Colour::Basic((n - 30) as u8)),
                n @ 90..=97 => self.fg = Some(Colour::Basic((n - 90 + 8) as u8)),
                n @ 40..=47 => self.bg = Some(Colour::Basic((n - 40) as u8)),
                n @ 100..=107 => self.bg = Some(Colour::Basic((n - 100 + 8) as u8)),
                39 => self.fg = None,
                49 => self.bg = None,
                n @ (38 | 48) => {
                    let (colour, used) = extended(&params[i + 1..]);
                    i += used;
                    if let Some(c) = colour {
                        if n == 38 { self.fg = Some(c) } else { self.bg = Some(c) }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `5;N` (256 colours) or `2;R;G;B`; returns the colour and how many parameters it used.
fn extended(rest: &[u16]) -> (Option<Colour>, usize) {
    match rest {
        [5, n, ..] => (Some(palette(*n as u8)), 2),
        [2, r, g, b, ..] => (Some(Colour::Rgb(*r as u8, *g as u8, *b as u8)), 4),
        _ => (None, rest.len()),
    }
}

/// A 256-colour index: the first 16 are the themed palette, then the 6×6×6 cube and
/// the grey ramp.
fn palette(n: u8) -> Colour {
    match n {
        0..16 => Colour::Basic(n),
        16..232 => {
            let n = n - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            Colour::Rgb(level(n / 36), level(n / 6 % 6), level(n % 6))
        }
        _ => {
            let v = 8 + (n - 232) * 10;
            Colour::Rgb(v, v, v)
        }
    }
}

/// One log line as HTML.
pub fn to_html(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut pen = Pen::default();
    let mut open = false;
    // Text between sequences, escaped as a whole when a sequence (or the end) comes.
    let mut text = String::new();
    for piece in opsbook_core::terminal::pieces(line) {
        let (params, last) = match piece {
            Piece::Char(c) => {
                if !c.is_control() || c == '\t' {
                    text.push(c);
                }
                continue;
            }
            Piece::Csi { params, last } => (params, last),
            Piece::Other => (String::new(), '\0'),
        };
        out.push_str(&super::escape(&text));
        text.clear();
        if last != 'm' {
            continue;
        }
        let params: Vec<u16> = if params.is_empty() {
            Vec::new()
        } else {
            params.split([';', ':']).map(|p| p.parse().unwrap_or(0)).collect()
        };
        let before = pen.clone();
        pen.apply(&params);
        if pen != before {
            if open {
                out.push_str("</span>");
                open = false;
            }
            if !pen.is_plain() {
                pen.open(&mut out);
                open = true;
            }
        }
    }
    out.push_str(&super::escape(&text));
    if open {
        out.push_str("</span>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn colours_become_spans_and_text_is_escaped() {
        assert_eq!(to_html("\x1b[1;31mFAIL\x1b[0m <b>"), "<span class=\"b f1\">FAIL</span> &lt;b&gt;");
        assert_eq!(to_html("\x1b[92mok\x1b[39m done"), "<span class=\"f10\">ok</span> done");
        assert_eq!(to_html("\x1b[38;2;255;128;0morange\x1b[m"), "<span style=\"color:#ff8000;\">orange</span>");
        assert_eq!(to_html("\x1b[38;5;196mred"), "<span style=\"color:#ff0000;\">red</span>");
        assert_eq!(to_html("\x1b[48;5;4mbg"), "<span class=\"g4\">bg</span>");
    }

    #[test]
    fn other_sequences_and_controls_are_dropped() {
        assert_eq!(to_html("\x1b[2K\x1b[1Gprogress\r"), "progress");
        assert_eq!(to_html("\x1b]0;title\x07text"), "text");
        assert_eq!(to_html("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(to_html("broken \x1b[31"), "broken ");
        assert_eq!(to_html("tab\there"), "tab\there");
    }

    #[test]
    fn any_input_is_safe() {
        for s in ["\x1b", "\x1b[", "\x1b[38;5m", "\x1b[38;2;1m", "\x1b[999999999m", "<script>\x1b[0m"] {
            let html = to_html(s);
            assert!(!html.contains('<') || html.starts_with("&lt;") || html.contains("<span"), "{s:?} -> {html}");
            assert!(!html.contains("<script"), "{html}");
        }
    }
}
