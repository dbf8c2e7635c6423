//! Template tags and blocks (`{% if %}`, `{% for %}`…): each branch is scanned from the
//! state where the block opened, and the branches must leave the shell in the same place.

use super::{CONDITIONAL_SHELL, Context, Frame, Pending, Scanner, strictest};

/// The part of the scanner's state that template branches must agree on.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct State {
    stack: Vec<Frame>,
    pending: Vec<Pending>,
}

/// An open `{% %}` block.
pub(super) struct Block {
    /// `if`: branches; `for` (and the blocks whose body is not written where it stands,
    /// such as `macro`): a body that may be written any number of times, so it must end
    /// where it began.
    branches: bool,
    /// Where its opening tag is.
    start: usize,
    at_open: State,
    ends: Vec<State>,
    has_else: bool,
}

impl Block {
    fn new(branches: bool, start: usize, at_open: State) -> Block {
        Block { branches, start, at_open, ends: Vec::new(), has_else: false }
    }
}

impl<'a> Scanner<'a> {
    /// Follows `{% if %}`, `{% for %}` and the blocks like them (the tag at `start`).
    pub(super) fn control(&mut self, start: usize) {
        let (word, assigns) = self.tag_words();
        let state = self.state();
        match word {
            "if" | "for" | "macro" | "call" => self.blocks.push(Block::new(word == "if", start, state)),
            // A filter changes the text after the values in it were written for the shell.
            "filter" => self.lose(super::FILTER_BLOCK),
            // `{% set x %}…{% endset %}` keeps its text for later.
            "set" if !assigns => self.blocks.push(Block::new(false, start, state)),
            "elif" | "else" => {
                if let Some(block) = self.blocks.last_mut() {
                    block.ends.push(state);
                    block.has_else |= word == "else";
                    let restart = block.at_open.clone();
                    self.restore(restart);
                }
            }
            "endif" | "endfor" | "endmacro" | "endcall" | "endset" => {
                if let Some(mut block) = self.blocks.pop() {
                    block.ends.push(state);
                    if !block.branches || !block.has_else {
                        block.ends.push(block.at_open.clone());
                    }
                    // A loop's next round starts where its body ended: that must be where
                    // the body began, as far as any value in it is concerned.
                    let settled = block.branches || block.ends.iter().all(|e| same_command(e, &block.at_open));
                    match join(&block.ends, block.start).filter(|_| settled) {
                        Some(joined) => self.restore(joined),
                        None => {
                            // The values inside it cannot be told either (a loop's second
                            // round starts where its first ended).
                            for i in self.out.iter_mut().filter(|i| i.start > block.start) {
                                i.context = Context::Refused(CONDITIONAL_SHELL);
                            }
                            self.lose(CONDITIONAL_SHELL);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether the tag at `self.i` is `{% NAME %}` (with any whitespace control).
    pub(super) fn tag_is(&self, name: &str) -> bool {
        self.tag_words().0 == name
    }

    /// The first word of the `{% %}` tag at `self.i`, and whether it assigns (`=`).
    pub(super) fn tag_words(&self) -> (&'a str, bool) {
        let rest = self.text(self.i + 2, self.b.len());
        let Some(end) = rest.find("%}") else { return ("", false) };
        let inner = rest[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        (inner.split_whitespace().next().unwrap_or_default(), inner.contains('='))
    }

    /// Where a tag whose text starts at `from` ends (after `close`); a `}}` or `%}` in a
    /// template string (`{{ "}}" }}`) does not end it.
    pub(super) fn tag_end(&self, from: usize, close: &str, strings: bool) -> usize {
        crate::template::close_at(self.text(from, self.b.len()), close, strings).map_or(self.b.len(), |i| from + i + 2)
    }

    fn state(&self) -> State {
        State { stack: self.stack.clone(), pending: self.pending.clone() }
    }

    fn restore(&mut self, s: State) {
        self.stack = s.stack;
        self.pending = s.pending;
    }
}

/// The state after a block (opened at `start`) whose branches ended in `ends`, if they
/// agree on the shell syntax that is open. The current command may differ: it counts as
/// the stricter of the branches' commands, and a word that the block began is one that
/// template logic built.
fn join(ends: &[State], start: usize) -> Option<State> {
    let (first, rest) = ends.split_first()?;
    let mut joined = first.clone();
    for s in rest {
        if s.pending != joined.pending || s.stack.len() != joined.stack.len() {
            return None;
        }
        for (a, b) in joined.stack.iter_mut().zip(&s.stack) {
            match (a, b) {
                (Frame::Command(a), Frame::Command(b)) => {
                    if (a.depth, a.cases, a.pattern) != (b.depth, b.cases, b.pattern) {
                        return None;
                    }
                    // Whether the next word is the command is read both ways if the
                    // branches differ on it.
                    if a.fresh != b.fresh || a.maybe_fresh || b.maybe_fresh {
                        a.fresh = false;
                        a.maybe_fresh = true;
                    }
                    a.kind = strictest(a.kind, b.kind);
                    a.code_next |= b.code_next;
                    // An option's argument only if it is one either way.
                    a.skip &= b.skip;
                    *a.ssh = super::ssh::Ssh::merged(&a.ssh, &b.ssh);
                    *a.copy = super::copy::Copy::merged(&a.copy, &b.copy);
                    a.code = a.code.or(b.code);
                    a.target |= b.target;
                    let inside = |w: Option<usize>| w.is_some_and(|w| w >= start);
                    if a.word.is_some() != b.word.is_some() || inside(a.word) || inside(b.word) {
                        a.word = Some(usize::MAX);
                    }
                }
                (a, b) if a == b => {}
                _ => return None,
            }
        }
    }
    // A single branch (a loop's body against the state before it) still counts.
    for frame in &mut joined.stack {
        if let Frame::Command(c) = frame
            && c.word.is_some_and(|w| w >= start)
        {
            c.word = Some(usize::MAX);
        }
    }
    Some(joined)
}

/// Shell text of a template piece: `{% %}` and `{# #}` tags removed, and each `{{ }}`
/// replaced by `value` (kept as written if `None`).
pub(super) fn without_tags(text: &str, value: Option<&str>) -> String {
    let mut plain = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        plain.push_str(&rest[..open]);
        let close = match rest.as_bytes().get(open + 1) {
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            Some(b'{') if value.is_some() => "}}",
            _ => {
                plain.push('{');
                rest = &rest[open + 1..];
                continue;
            }
        };
        if close == "}}" {
            plain.push_str(value.unwrap_or_default());
        }
        rest = rest[open..].find(close).map_or("", |c| &rest[open + c + 2..]);
    }
    plain.push_str(rest);
    plain
}

/// Whether two states agree on everything but where the current word began.
fn same_command(a: &State, b: &State) -> bool {
    let plain = |s: &State| {
        let mut s = s.clone();
        for frame in &mut s.stack {
            if let Frame::Command(c) = frame {
                c.word = None;
                c.command_word = None;
            }
        }
        s
    };
    plain(a) == plain(b)
}
