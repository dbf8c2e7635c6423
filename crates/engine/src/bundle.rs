//! Bundles on disk: packing the files beside a runbook (`opsbook push`) and writing a
//! version's files out as an execution's working directory (server workers).
//!
//! What is packed: every regular file under the runbook's directory, except hidden ones
//! (a name starting with `.`), runbooks (the runbook's own text is its version already,
//! and runbooks sharing a directory each have their own versions: editing one must not
//! change the others) other than those the runbook calls (`runbook: { file }`), which are
//! part of it, and what `.opsbookignore` in that directory lists. A
//! symbolic link is packed as the file it points to when that file is inside the
//! directory; one pointing outside (or to a directory) is refused, so no path leaves
//! the bundle.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use opsbook_core::bundle::Bundle;

/// The file listing what not to bundle, one pattern a line (`#` comments): `name`
/// matches that name anywhere, `dir/` a directory, `a/b` a path from the runbook's
/// directory; `*` and `?` match within a name.
pub const IGNORE_FILE: &str = ".opsbookignore";

/// Packs the files under `dir` (see the module documentation) with the runbooks in
/// `called` (canonical paths: those the runbook calls), refusing more than `max_bytes` of
/// them with the largest named.
pub fn pack_dir(dir: &Path, max_bytes: usize, called: &[PathBuf]) -> Result<Bundle, String> {
    let root = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let ignore = Ignore::read(&root.join(IGNORE_FILE))?;
    let mut found = Vec::new();
    walk(&Walk { root: &root, ignore: &ignore, called }, &root, "", false, &mut found)?;
    // Whoever may read runbooks may read their files: what looks private is refused, never
    // sent quietly (listed in .opsbookignore, it stays home).
    let private: Vec<String> =
        found.iter().filter_map(|f| private_why(f).map(|why| format!("{} ({why})", f.rel))).collect();
    if !private.is_empty() {
        let more = if private.len() > 5 { format!(" and {} more", private.len() - 5) } else { String::new() };
        return Err(format!(
            "{}{more}: these look private, and a runbook's files can be read by everyone who may read runbooks; \
             list them in {}/{IGNORE_FILE} (or make them readable by others if they are meant to travel)",
            private.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            dir.display()
        ));
    }
    let total: u64 = found.iter().map(|f| f.size).sum();
    if total > max_bytes as u64 {
        found.sort_by_key(|f| std::cmp::Reverse(f.size));
        let largest: Vec<String> = found.iter().take(5).map(|f| format!("{} ({})", f.rel, human(f.size))).collect();
        return Err(format!(
            "the files beside the runbook in {} come to {}, over the {} a bundle may hold; list what the runbook \
             does not need in {}/{IGNORE_FILE} (largest: {})",
            dir.display(),
            human(total),
            human(max_bytes as u64),
            dir.display(),
            largest.join(", ")
        ));
    }
    let mut bundle = Bundle::new();
    for f in found {
        let data = std::fs::read(&f.source).map_err(|e| format!("{}: {e}", f.rel))?;
        bundle.add(&f.rel, f.executable, data)?;
    }
    Ok(bundle)
}

struct Found {
    rel: String,
    source: PathBuf,
    executable: bool,
    size: u64,
    mode: u32,
    /// Under a directory (below the runbook's) that only its owner may enter.
    hidden_by_dir: bool,
}

/// Why a file looks private: readable by its owner only, a database, or its journal.
fn private_why(f: &Found) -> Option<&'static str> {
    if f.mode & 0o044 == 0 {
        return Some("readable by its owner only");
    }
    if f.hidden_by_dir {
        return Some("in a directory only its owner may enter");
    }
    let name = f.rel.rsplit('/').next().unwrap_or(&f.rel);
    if [".db-wal", ".db-shm", ".db-journal", ".sqlite-wal", ".sqlite-shm"].iter().any(|s| name.ends_with(s)) {
        return Some("a database journal");
    }
    if name.ends_with(".tfstate") || name.ends_with(".tfstate.backup") {
        return Some("Terraform state, which holds secrets");
    }

    let mut head = [0u8; 4096];
    let read = std::fs::File::open(&f.source).and_then(|mut file| std::io::Read::read(&mut file, &mut head));
    let head = &head[..read.unwrap_or(0)];
    if head.starts_with(b"SQLite format 3\0") {
        return Some("a database");
    }
    let text = String::from_utf8_lossy(head);
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
        return Some("a private key");
    }
    text.to_ascii_lowercase().contains("aws_secret_access_key").then_some("AWS credentials")
}

/// What a walk of a runbook's directory keeps to.
struct Walk<'a> {
    root: &'a Path,
    ignore: &'a Ignore,
    called: &'a [PathBuf],
}

/// `hidden`: `dir` is (under) a directory below the root that only its owner may enter.
fn walk(w: &Walk<'_>, dir: &Path, prefix: &str, hidden: bool, found: &mut Vec<Found>) -> Result<(), String> {
    let (root, ignore) = (w.root, w.ignore);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(format!("{}: a file name that is not UTF-8", entry.path().display()));
        };
        let rel = format!("{prefix}{name}");
        let meta = entry.metadata().map_err(|e| format!("{rel}: {e}"))?;
        let is_dir = meta.is_dir();
        if name.starts_with('.') || ignore.excludes(&rel, name, is_dir) {
            continue;
        }
        if is_dir {
            let owner_only = meta.permissions().mode() & 0o055 == 0;
            walk(w, &entry.path(), &format!("{rel}/"), hidden || owner_only, found)?;
            continue;
        }
        let (source, meta) = if meta.file_type().is_symlink() {
            let target = entry.path().canonicalize().map_err(|e| format!("{rel}: a broken symbolic link ({e})"))?;
            if !target.starts_with(root) {
                return Err(format!(
                    "{rel}: a symbolic link to {}, outside the runbook's directory: a bundle holds the runbook's own \
                     files only (copy the file in, or list the link in {IGNORE_FILE})",
                    target.display()
                ));
            }
            let meta = target.metadata().map_err(|e| format!("{rel}: {e}"))?;
            if meta.is_dir() {
                return Err(format!(
                    "{rel}: a symbolic link to a directory; bundle the directory itself, or list the link in \
                     {IGNORE_FILE}"
                ));
            }
            (target, meta)
        } else {
            (entry.path(), meta)
        };
        if !meta.is_file() {
            return Err(format!("{rel}: not a regular file (list it in {IGNORE_FILE})"));
        }
        if is_runbook(&source, meta.len()) && !w.called.contains(&source) {
            continue;
        }
        let mode = meta.permissions().mode();
        found.push(Found { rel, source, executable: mode & 0o111 != 0, size: meta.len(), mode, hidden_by_dir: hidden });
    }
    Ok(())
}

/// Whether a file is an opsbook runbook (YAML with `apiVersion: opsbook/…` and
/// `kind: Runbook` at the top level).
fn is_runbook(path: &Path, size: u64) -> bool {
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    if !yaml || size > 4 << 20 {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().trim_matches('"').to_string()))
    };
    value("apiVersion").is_some_and(|v| v.starts_with("opsbook/")) && value("kind").is_some_and(|v| v == "Runbook")
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// The patterns of an `.opsbookignore`.
#[derive(Debug, Default)]
pub struct Ignore {
    patterns: Vec<(String, bool)>,
}

impl Ignore {
    /// Reads the file (none: nothing ignored but hidden files).
    pub fn read(path: &Path) -> Result<Ignore, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Ignore::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let dir_only = l.ends_with('/');
                (l.trim_start_matches('/').trim_end_matches('/').to_string(), dir_only)
            })
            .filter(|(p, _)| !p.is_empty())
            .collect();
        Ignore { patterns }
    }

    /// Whether the entry at `rel` (named `name`) is left out.
    pub fn excludes(&self, rel: &str, name: &str, is_dir: bool) -> bool {
        self.patterns.iter().any(|(p, dir_only)| {
            if *dir_only && !is_dir {
                return false;
            }
            if p.contains('/') { wildcard(p, rel) } else { wildcard(p, name) }
        })
    }
}

/// `*` any run of characters but `/`, `?` one character but `/`.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer match with one backtrack point per `*`.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == t[ti] || (p[pi] == '?' && t[ti] != '/')) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star.filter(|_| t[mark] != '/') {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Writes a bundle out as directory `dir` (which must not exist yet): files with their
/// modes, all at once (written beside it, then renamed, so no one sees half of it).
/// Returns false, writing nothing, when `dir` exists already.
pub fn materialize(bundle: &Bundle, dir: &Path) -> std::io::Result<bool> {
    if dir.exists() {
        return Ok(false);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("bundle");
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir(&partial)?;
    let written = write_files(bundle, &partial).and_then(|()| std::fs::rename(&partial, dir));
    if let Err(e) = written {
        // Nothing half-written stays behind.
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    Ok(true)
}

fn write_files(bundle: &Bundle, root: &Path) -> std::io::Result<()> {
    for (path, file) in bundle.files() {
        let target = root.join(path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mode = if file.executable { 0o755 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&target)?;
        std::io::Write::write_all(&mut f, &file.data)?;
        // Whatever the umask: the mode is part of the bundle.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_directory_packs_and_comes_back_with_its_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("rb");
        write(&src.join("deploy.yaml"), "apiVersion: opsbook/v1\nkind: Runbook\n", 0o644);
        write(&src.join("other.yml"), "apiVersion: \"opsbook/v1\"\nkind: Runbook\n", 0o644);
        write(&src.join("config.yaml"), "apiVersion: apps/v1\nkind: Deployment\n", 0o644);
        write(&src.join("scripts/deploy.sh"), "#!/bin/sh\necho deployed\n", 0o755);
        write(&src.join("scripts/notes.tmp"), "scratch\n", 0o644);
        write(&src.join("build/out.bin"), "big\n", 0o644);
        write(&src.join(".git/config"), "hidden\n", 0o644);
        write(&src.join(".opsbookignore"), "# not needed\n*.tmp\nbuild/\n", 0o644);
        std::os::unix::fs::symlink("scripts/deploy.sh", src.join("run.sh")).unwrap();
        let b = pack_dir(&src, 1 << 20, &[]).unwrap();
        let listed: Vec<(&str, bool)> = b.files().map(|(p, f)| (p, f.executable)).collect();
        // Runbooks are not bundled (each is its own version); other YAML is.
        assert_eq!(listed, vec![("config.yaml", false), ("run.sh", true), ("scripts/deploy.sh", true)]);
        // Except the runbooks it calls, which are part of it.
        let called = [src.join("other.yml").canonicalize().unwrap()];
        let with = pack_dir(&src, 1 << 20, &called).unwrap();
        let listed: Vec<&str> = with.files().map(|(p, _)| p).collect();
        assert_eq!(listed, vec!["config.yaml", "other.yml", "run.sh", "scripts/deploy.sh"]);

        let out = tmp.path().join("work/exec1");
        assert!(materialize(&b, &out).unwrap());
        let script = out.join("scripts/deploy.sh");
        assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
        let ran = std::process::Command::new(&script).current_dir(&out).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "deployed\n");
        assert_eq!(std::fs::metadata(out.join("config.yaml")).unwrap().permissions().mode() & 0o777, 0o644);
        // Written once: an existing directory is left as it is.
        std::fs::write(out.join("state"), "kept").unwrap();
        assert!(!materialize(&b, &out).unwrap());
        assert!(out.join("state").exists());
        // Nothing half-written is left beside it.
        let beside: Vec<_> = std::fs::read_dir(tmp.path().join("work")).unwrap().collect();
        assert_eq!(beside.len(), 1);
    }

    #[test]
    fn links_out_and_oversized_directories_are_refused_saying_why() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("rb");
        write(&src.join("deploy.sh"), "echo deploy\n", 0o644);
        write(&tmp.path().join("secret.txt"), "outside\n", 0o644);
        std::os::unix::fs::symlink("../secret.txt", src.join("leak")).unwrap();
        let err = pack_dir(&src, 1 << 20, &[]).unwrap_err();
        assert!(
            err.starts_with("leak: a symbolic link to ") && err.contains("outside the runbook's directory"),
            "{err}"
        );
        std::fs::remove_file(src.join("leak")).unwrap();
        std::os::unix::fs::symlink(".", src.join("loop")).unwrap();
        let err = pack_dir(&src, 1 << 20, &[]).unwrap_err();
        assert!(err.contains("loop: a symbolic link to a directory"), "{err}");
        std::fs::remove_file(src.join("loop")).unwrap();

        // What looks private stays home: owner-only files, databases.
        write(&src.join("creds.toml"), "token = \"obk_x\"\n", 0o600);
        let err = pack_dir(&src, 1 << 20, &[]).unwrap_err();
        assert!(err.starts_with("creds.toml (readable by its owner only): these look private"), "{err}");
        std::fs::remove_file(src.join("creds.toml")).unwrap();
        write(&src.join("state.db"), "SQLite format 3\0 and pages", 0o644);
        let err = pack_dir(&src, 1 << 20, &[]).unwrap_err();
        assert!(err.starts_with("state.db (a database)"), "{err}");
        write(&src.join(".opsbookignore"), "*.db\n", 0o644);
        assert!(pack_dir(&src, 1 << 20, &[]).is_ok(), "listed, it stays home");
        std::fs::remove_file(src.join("state.db")).unwrap();
        // A private key, Terraform state, a file in a directory only its owner may enter.
        for (name, text, why) in [
            ("deploy-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", "deploy-key (a private key)"),
            ("infra.tfstate", "{}", "infra.tfstate (Terraform state, which holds secrets)"),
            ("aws/credentials", "[default]\naws_secret_access_key = x\n", "aws/credentials (AWS credentials)"),
            ("priv/notes.txt", "x", "priv/notes.txt (in a directory only its owner may enter)"),
        ] {
            std::fs::create_dir_all(src.join("priv")).unwrap();
            std::fs::create_dir_all(src.join("aws")).unwrap();
            std::fs::set_permissions(src.join("priv"), std::fs::Permissions::from_mode(0o700)).unwrap();
            write(&src.join(name), text, 0o644);
            let err = pack_dir(&src, 1 << 20, &[]).unwrap_err();
            assert!(err.starts_with(why), "{err}");
            std::fs::remove_file(src.join(name)).unwrap();
        }
        std::fs::remove_dir(src.join("priv")).unwrap();
        std::fs::remove_dir(src.join("aws")).unwrap();

        write(&src.join("artifact.bin"), &"x".repeat(4096), 0o644);
        let err = pack_dir(&src, 2048, &[]).unwrap_err();
        assert!(err.contains("over the 2.0 KiB a bundle may hold"), "{err}");
        assert!(err.contains("(largest: artifact.bin (4.0 KiB), deploy.sh (12 bytes))"), "{err}");
    }

    #[test]
    fn ignore_patterns() {
        let ig = Ignore::parse("*.log\nbuild/\n/docs/*.md\nnode_modules\n");
        assert!(ig.excludes("a/b/x.log", "x.log", false));
        assert!(ig.excludes("build", "build", true));
        assert!(!ig.excludes("build", "build", false), "build/ names directories only");
        assert!(ig.excludes("docs/a.md", "a.md", false));
        assert!(!ig.excludes("docs/sub/a.md", "a.md", false), "* stays within a name");
        assert!(ig.excludes("web/node_modules", "node_modules", true));
        assert!(!ig.excludes("scripts/deploy.sh", "deploy.sh", false));
        assert!(wildcard("a?c*", "abcdef") && !wildcard("a*", "a/b") && wildcard("*", ""));
    }
}
