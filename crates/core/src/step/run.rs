//! The `run` kind: a shell script executed in its own process group.

use std::collections::BTreeMap;

use crate::document::Shell;
use crate::duration::Dur;

/// A shell script with the settings needed to run it. Used for `run` steps,
/// rollbacks and prerequisite checks.
#[derive(Debug, Clone)]
pub struct Script {
    /// The script template; every `{{ }}` value is shell-quoted when rendered.
    pub template: String,
    pub shell: Shell,
    pub env: BTreeMap<String, String>,
    /// Relative to the runbook's directory.
    pub workdir: Option<String>,
    pub timeout: Option<Dur>,
}

/// Environment variable names a step may set: portable shell identifiers.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Finds `{{ }}` placed inside shell quotes. Values are already quoted as one shell
/// word, so inside `"..."` or `'...'` the quotes would become part of the value.
/// Returns, for each such place, its 1-based line and which `{{`/`{%` of that line it is (0-based).
pub fn quoted_interpolations(script: &str) -> Vec<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Q {
        Single,
        Double,
        Subst,
    }
    let mut stack: Vec<Q> = Vec::new();
    let mut lines = Vec::new();
    let b = script.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut nth = 0;
    while i < b.len() {
        let c = b[i];
        let top = stack.last().copied();
        if c == b'\n' {
            line += 1;
            nth = 0;
        }
        if b[i..].starts_with(b"{{") || b[i..].starts_with(b"{%") {
            if matches!(top, Some(Q::Single | Q::Double)) && lines.last().map(|l: &(usize, usize)| l.0) != Some(line) {
                lines.push((line, nth));
            }
            nth += 1;
            // Skip the whole tag: quotes inside it belong to the template language.
            let close: &[u8] = if b[i + 1] == b'{' { b"}}" } else { b"%}" };
            match b[i + 2..].windows(2).position(|w| w == close) {
                Some(p) => {
                    let newlines = b[i..i + 2 + p].iter().filter(|&&x| x == b'\n').count();
                    if newlines > 0 {
                        line += newlines;
                        nth = 0;
                    }
                    i += p + 4;
                }
                None => i = b.len(),
            }
            continue;
        }
        match (top, c) {
            (Some(Q::Single), b'\'') => {
                stack.pop();
            }
            (Some(Q::Single), _) => {}
            (_, b'\\') => i += 1,
            (Some(Q::Double), b'"') => {
                stack.pop();
            }
            (Some(Q::Double), b'$') if b.get(i + 1) == Some(&b'(') => {
                stack.push(Q::Subst);
                i += 1;
            }
            (Some(Q::Double), _) => {}
            (Some(Q::Subst), b')') => {
                stack.pop();
            }
            (_, b'\'') => stack.push(Q::Single),
            (_, b'"') => stack.push(Q::Double),
            (_, b'#') if i == 0 || b[i - 1].is_ascii_whitespace() => {
                // A comment runs to the end of the line.
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::quoted_interpolations as q;

    #[test]
    fn finds_interpolations_inside_quotes() {
        assert_eq!(q("echo {{ params.x }}"), Vec::<(usize, usize)>::new());
        assert_eq!(q("echo \"{{ params.x }}\""), vec![(1, 0)]);
        assert_eq!(q("echo 'a {{ params.x }}'"), vec![(1, 0)]);
        assert_eq!(q("echo {{ a }} \"{{ b }}\""), vec![(1, 1)]);
        assert_eq!(q("echo \"$(cat {{ params.f }})\""), Vec::<(usize, usize)>::new());
        assert_eq!(q("echo \"it's\" {{ x }}\necho \"{{ y }}\""), vec![(2, 0)]);
        assert_eq!(q("echo {{ x | replace('a', \"b\") }} \"ok\""), Vec::<(usize, usize)>::new());
        assert_eq!(q("# don't\necho {{ x }}"), Vec::<(usize, usize)>::new());
        assert_eq!(q("echo \\\"{{ x }}"), Vec::<(usize, usize)>::new());
    }
}
