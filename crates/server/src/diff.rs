//! A unified line diff between two runbook versions.

/// Runbooks are small; the table is capped so a huge input cannot exhaust memory.
const MAX_TABLE: usize = 25_000_000;

/// The edit script from `a` to `b` by a longest-common-subsequence table: (tag, line
/// index in a, line index in b), tag ' ' (same), '-' or '+'. `None` past [`MAX_TABLE`].
fn edit_script(a: &[&str], b: &[&str]) -> Option<Vec<(char, usize, usize)>> {
    if a.len().saturating_mul(b.len()) > MAX_TABLE {
        return None;
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    Some(ops)
}

/// One line of a line-by-line comparison.
#[derive(Debug, PartialEq)]
pub enum LineOp<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// `a` and `b` compared line by line (for a side-by-side view); past the size cap, all
/// of `a` removed and all of `b` added.
pub fn line_ops<'a>(a: &'a str, b: &'a str) -> Vec<LineOp<'a>> {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    match edit_script(&a, &b) {
        Some(ops) => ops
            .into_iter()
            .map(|(tag, i, j)| match tag {
                ' ' => LineOp::Same(a[i]),
                '-' => LineOp::Removed(a[i]),
                _ => LineOp::Added(b[j]),
            })
            .collect(),
        None => a.iter().map(|l| LineOp::Removed(l)).chain(b.iter().map(|l| LineOp::Added(l))).collect(),
    }
}

/// Lines of `a` and `b` compared with a longest-common-subsequence table; the output
/// is in unified format with `context` lines around each change.
pub fn unified(a: &str, b: &str, from: &str, to: &str, context: usize) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let Some(ops) = edit_script(&a, &b) else {
        return format!("--- {from}\n+++ {to}\n@@ too large to diff ({} and {} lines) @@\n", a.len(), b.len());
    };
    let mut out = format!("--- {from}\n+++ {to}\n");
    let mut k = 0;
    while k < ops.len() {
        if ops[k].0 == ' ' {
            k += 1;
            continue;
        }
        // A hunk: `context` lines before this change, through every change separated
        // from the previous one by at most 2 × `context` unchanged lines, and `context` after.
        let start = k.saturating_sub(context);
        let mut last_change = k;
        let mut end = k + 1;
        while end < ops.len() {
            if ops[end].0 != ' ' {
                last_change = end;
            } else if end - last_change > 2 * context {
                break;
            }
            end += 1;
        }
        let end = (last_change + context + 1).min(ops.len());
        let a_start = ops[start].1;
        let b_start = ops[start].2;
        let a_len = ops[start..end].iter().filter(|o| o.0 != '+').count();
        let b_len = ops[start..end].iter().filter(|o| o.0 != '-').count();
        out.push_str(&format!("@@ -{},{a_len} +{},{b_len} @@\n", a_start + 1, b_start + 1));
        for &(tag, ai, bj) in &ops[start..end] {
            let line = if tag == '+' { b[bj] } else { a[ai] };
            out.push(tag);
            out.push_str(line);
            out.push('\n');
        }
        k = end;
    }
    out
}

/// The files that differ between two bundles: a unified diff for text, a line saying so
/// for binary content and for a mode that changed.
pub fn bundles(old: &opsbook_core::bundle::Bundle, new: &opsbook_core::bundle::Bundle, from: &str, to: &str) -> String {
    use opsbook_core::bundle::BundleFile;
    fn text(f: Option<&BundleFile>) -> Option<&str> {
        match f {
            None => Some(""),
            Some(f) if f.data.contains(&0) => None,
            Some(f) => std::str::from_utf8(&f.data).ok(),
        }
    }
    let mode = |f: &BundleFile| if f.executable { "755" } else { "644" };
    let mut out = String::new();
    for (path, a, b) in opsbook_core::bundle::changes(old, new) {
        let (la, lb) = (format!("{from}: {path}"), format!("{to}: {path}"));
        if let (Some(a), Some(b)) = (a, b)
            && a.executable != b.executable
        {
            out.push_str(&format!("mode of {path}: {} -> {}\n", mode(a), mode(b)));
        }
        if a.map(|f| &f.data) == b.map(|f| &f.data) {
            continue;
        }
        match (text(a), text(b)) {
            (Some(ta), Some(tb)) => {
                let la = if a.is_some() { la } else { "/dev/null".to_string() };
                let lb = if b.is_some() { lb } else { "/dev/null".to_string() };
                out.push_str(&unified(ta, tb, &la, &lb, 3));
            }
            _ => out.push_str(&format!(
                "Binary file {path} differs ({} -> {} bytes)\n",
                a.map_or(0, |f| f.data.len()),
                b.map_or(0, |f| f.data.len())
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diffs_lines() {
        let a = "a\nb\nc\nd\ne\n";
        let b = "a\nb\nC\nd\ne\nf\n";
        assert_eq!(
            super::unified(a, b, "1.0.0", "1.1.0", 1),
            "--- 1.0.0\n+++ 1.1.0\n@@ -2,4 +2,5 @@\n b\n-c\n+C\n d\n e\n+f\n"
        );
        assert_eq!(super::unified(a, a, "x", "y", 3), "--- x\n+++ y\n");
    }

    #[test]
    fn diffs_bundles_file_by_file() {
        use opsbook_core::bundle::Bundle;
        let mut old = Bundle::new();
        old.add("deploy.sh", false, b"echo 1\n".to_vec()).unwrap();
        old.add("logo.png", false, vec![0, 1, 2]).unwrap();
        let mut new = Bundle::new();
        new.add("deploy.sh", true, b"echo 2\n".to_vec()).unwrap();
        new.add("logo.png", false, vec![0, 1, 2, 3]).unwrap();
        new.add("notes.txt", false, b"new\n".to_vec()).unwrap();
        let d = super::bundles(&old, &new, "web 1.0.0", "web 1.1.0");
        assert!(d.contains("mode of deploy.sh: 644 -> 755\n"), "{d}");
        assert!(d.contains("--- web 1.0.0: deploy.sh\n+++ web 1.1.0: deploy.sh\n"), "{d}");
        assert!(d.contains("-echo 1\n+echo 2\n"), "{d}");
        assert!(d.contains("Binary file logo.png differs (3 -> 4 bytes)\n"), "{d}");
        assert!(d.contains("--- /dev/null\n+++ web 1.1.0: notes.txt\n"), "{d}");
    }
}
