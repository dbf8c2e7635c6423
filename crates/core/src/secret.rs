//! Masking of secret values in any text that is shown or stored.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use crate::params::MASK;

/// The process's own credentials, when it is a server or a worker.
struct Private {
    names: Vec<String>,
    values: Vec<String>,
}

static PRIVATE: std::sync::OnceLock<Private> = std::sync::OnceLock::new();

/// Keeps the process's own credentials from its steps (a server or a worker, at start;
/// the first call counts): the environment variables `names` are left out of every
/// step's and every command source's environment, and their values and `values` (its
/// secret keys, its database password, webhook keys) are masked in every execution, as
/// secret parameters are. Values shorter than 6 characters are not masked (they would
/// hide common text and protect nothing).
pub fn keep_private(names: Vec<String>, mut values: Vec<String>) {
    values.extend(names.iter().filter_map(|n| std::env::var(n).ok()));
    values.retain(|v| v.trim().chars().count() >= 6);
    let _ = PRIVATE.set(Private { names, values });
}

/// The environment variables that steps and command sources do not inherit.
pub fn private_env() -> &'static [String] {
    PRIVATE.get().map_or(&[], |p| p.names.as_slice())
}

/// Replaces every occurrence of any secret with `***`.
///
/// Clones share one list: a value found later to be derived from a secret
/// ([`Masker::add`], a template filter's result) is masked by every clone from then on.
#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} secrets)", self.list().len())
    }
}

impl Masker {
    /// A masker for submitted secret values (as given: text, or typed values as their text).
    pub fn for_inputs<'a>(secrets: impl IntoIterator<Item = &'a crate::Input>) -> Masker {
        Masker::new(secrets.into_iter().map(|s| match s {
            crate::Input::Text(t) | crate::Input::Value(serde_json::Value::String(t)) => t.clone(),
            crate::Input::Value(v) => v.to_string(),
        }))
    }

    /// A masker for these secrets and the process's own credentials ([`keep_private`]).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Masker {
        let masker = Masker::default();
        masker.add(secrets.into_iter().chain(PRIVATE.get().iter().flat_map(|p| p.values.iter().cloned())));
        masker
    }

    /// Masks these values too (and the forms they may be written in), in this masker and
    /// every clone of it.
    pub fn add(&self, secrets: impl IntoIterator<Item = String>) {
        let forms = forms(secrets.into_iter().filter(|s| !s.is_empty()).collect());
        if forms.is_empty() {
            return;
        }
        let mut list = self.secrets.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        list.extend(forms);
        list.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        list.dedup();
    }

    fn list(&self) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
        self.secrets.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.list();
        let masked = if secrets.iter().any(|s| text.contains(s.as_str())) {
            let mut out = text.to_string();
            for s in secrets.iter() {
                if out.contains(s.as_str()) {
                    out = out.replace(s.as_str(), MASK);
                }
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(text)
        };
        let hidden = |c: char| c.is_control() && c != '\t';
        if secrets.is_empty() || !masked.contains(hidden) {
            return masked;
        }
        match mask_between_escapes(&secrets, &masked) {
            Some(out) => Cow::Owned(out),
            None => masked,
        }
    }

    pub fn mask_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.mask(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), self.mask_json(v))).collect()),
            other => other.clone(),
        }
    }

    /// Where to cut `buf` (a piece of a long line being split) so that no secret
    /// straddles the cut: returns a length `<= buf.len()`.
    pub fn safe_cut(&self, buf: &[u8]) -> usize {
        let mut cut = buf.len();
        for s in self.list().iter() {
            let s = s.as_bytes();
            for k in (1..s.len()).rev() {
                if k <= buf.len() && buf[buf.len() - k..] == s[..k] {
                    cut = cut.min(buf.len() - k);
                    break;
                }
            }
        }
        cut
    }
}

/// Terminal escape sequences or control characters inside a secret (`hun\x1b[1mter2`,
/// `hun\x0fter2`) hide it from a plain search, not from whoever reads the text as a
/// terminal or the web UI shows it: a secret in the text without them is masked too,
/// the sequences kept.
fn mask_between_escapes(secrets: &[String], text: &str) -> Option<String> {
    use crate::terminal::{Piece, spans};
    let spans: Vec<_> = spans(text).collect();
    let mut visible = String::new();
    // For each byte of `visible`, the span it comes from.
    let mut from = Vec::new();
    for (i, (_, piece)) in spans.iter().enumerate() {
        // What a terminal or the web UI shows: no sequences, no control characters.
        if let Piece::Char(c) = piece
            && (!c.is_control() || *c == '\t')
        {
            visible.push(*c);
            from.extend(std::iter::repeat_n(i, c.len_utf8()));
        }
    }
    let mut taken = vec![false; visible.len()];
    let mut hidden: Vec<(usize, usize)> = Vec::new();
    for s in secrets {
        for (at, _) in visible.match_indices(s.as_str()) {
            let bytes = at..at + s.len();
            if taken[bytes.clone()].iter().any(|t| *t) {
                continue;
            }
            taken[bytes.clone()].fill(true);
            hidden.push((from[bytes.start], from[bytes.end - 1]));
        }
    }
    if hidden.is_empty() {
        return None;
    }
    hidden.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut next = hidden.iter().peekable();
    let mut i = 0;
    while i < spans.len() {
        match next.next_if(|(first, _)| *first == i) {
            Some(&(first, last)) => {
                out.push_str(MASK);
                for (range, piece) in &spans[first..=last] {
                    if !matches!(piece, Piece::Char(_)) {
                        out.push_str(&text[range.clone()]);
                    }
                }
                i = last + 1;
            }
            None => {
                out.push_str(&text[spans[i].0.clone()]);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The secrets with the forms they may be shown in: line by line, as written into a
/// script, and in the common encodings.
fn forms(mut secrets: Vec<String>) -> Vec<String> {
    // A multi-line secret is also masked line by line, since logs are stored per line.
    let lines: Vec<String> = secrets
        .iter()
        .filter(|s| s.contains('\n'))
        .flat_map(|s| s.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect::<Vec<_>>())
        .collect();
    secrets.extend(lines);
    // Rendered scripts hold secrets as written for their shell context (quoted,
    // backslash-escaped), which is not the value itself when it has special characters.
    let written: Vec<String> = secrets
        .iter()
        .flat_map(|s| {
            // ssh's remote command: quoted for the remote shell, then for the script.
            let twice = crate::shell::Context::Remote(
                Box::new(crate::shell::Context::Bare),
                Box::new(crate::shell::Context::Bare),
            );
            [crate::shell::Context::Bare, crate::shell::Context::Double, twice]
                .iter()
                .filter_map(|c| crate::shell::escape(s, c).ok())
                .filter(|w| w != s && !w.contains(s.as_str()))
                .collect::<Vec<_>>()
        })
        .collect();
    secrets.extend(written);
    // The common encodings a script may print a secret in. Only the encoding of the
    // whole value is caught: a secret encoded together with other text (base64 of
    // `user:password`) is not.
    let encoded: Vec<String> = secrets.iter().flat_map(|s| encodings(s)).filter(|e| e.len() >= 4).collect();
    secrets.extend(encoded);
    secrets
}

/// A value's base64 (standard, padded and not; URL-safe), percent-encoded and
/// JSON-escaped forms, where they differ from the value.
fn encodings(value: &str) -> Vec<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let padded = base64(value.as_bytes(), STD);
    let bare = padded.trim_end_matches('=').to_string();
    let url_safe = bare.replace('+', "-").replace('/', "_");
    let percent: String = value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let json = serde_json::to_string(value).map(|j| j[1..j.len() - 1].to_string()).unwrap_or_default();
    // In a form, a space is `+`.
    let form = percent.replace("%20", "+");
    let mut out = vec![padded, bare, url_safe, percent, form, json];
    out.retain(|e| e != value);
    out.dedup();
    out
}

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let m = Masker::new(["hunter2".to_string(), "hunter2-long".to_string(), String::new()]);
        assert_eq!(m.mask("pw=hunter2-long and hunter2"), "pw=*** and ***");
        assert_eq!(m.mask("nothing here"), "nothing here");
        assert_eq!(m.safe_cut(b"abc hunt"), 4);
        assert_eq!(m.safe_cut(b"abc xyz"), 7);
    }

    #[test]
    fn masks_secrets_split_by_terminal_escapes() {
        let m = Masker::new(["hunter2".to_string()]);
        // The colours stay; the secret's characters go, whatever sequences sit among them.
        assert_eq!(m.mask("pw=hun\x1b[1mter2\x1b[0m!"), "pw=***\x1b[1m\x1b[0m!");
        assert_eq!(m.mask("\x1b[31mh\x1b]0;t\x07unter2 hunter2"), "\x1b[31m***\x1b]0;t\x07 ***");
        assert_eq!(m.mask("\x1b[1mhunte\x1b[0m"), "\x1b[1mhunte\x1b[0m", "no whole secret");
        // Control characters the UI drops, and `tput sgr0`'s `ESC ( B`.
        assert_eq!(m.mask("a hun\x0fter2 b"), "a *** b");
        assert_eq!(m.mask("hun\x00ter2"), "***");
        assert_eq!(m.mask("hun\x1b(B\x1b[mter2"), "***\x1b(B\x1b[m");
        let shown: String = crate::terminal::pieces(&m.mask("é hu\x1b[4mnter2é"))
            .filter_map(|p| match p {
                crate::terminal::Piece::Char(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(shown, "é ***é");
    }

    #[test]
    fn masks_common_encodings_of_a_secret() {
        assert_eq!(
            super::base64(b"hunter2", b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
            "aHVudGVyMg=="
        );
        let m = Masker::new(["p@ss w/rd\"x".to_string()]);
        for shown in
            ["cEBzcyB3L3JkIng=", "cEBzcyB3L3JkIng", "p%40ss%20w%2Frd%22x", "p%40ss+w%2Frd%22x", r#"p@ss w/rd\"x"#]
        {
            assert_eq!(m.mask(&format!("token={shown};")), "token=***;", "{shown}");
        }
        assert_eq!(m.mask("c3ViamVjdA=="), "c3ViamVjdA==", "other base64 stays");
    }

    #[test]
    fn masks_secrets_as_written_into_scripts() {
        let m = Masker::new(["it's $ecret".to_string()]);
        assert_eq!(m.mask(r#"echo "pw=it's \$ecret" done"#), r#"echo "pw=***" done"#);
        let quoted = crate::shell::escape("it's $ecret", &crate::shell::Context::Bare).unwrap();
        assert_eq!(m.mask(&format!("login {quoted}")), "login ***");
        // As `set -x` shows an ssh command whose remote line holds it.
        let remote =
            crate::shell::Context::Remote(Box::new(crate::shell::Context::Bare), Box::new(crate::shell::Context::Bare));
        let twice = crate::shell::escape("it's $ecret", &remote).unwrap();
        assert_ne!(twice, quoted);
        assert_eq!(m.mask(&format!("+ ssh web1 login {twice}")), "+ ssh web1 login ***");
    }
}
