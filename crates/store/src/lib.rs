//! Durable storage of runbooks, executions, steps, attempts, logs and approvals.
//!
//! The records, the storage traits and the rules every backend shares (audit hashing,
//! ids, the clock); the backends live in their own crates (`opsbook-store-sqlite`).
//! Architecture invariant: no SQL and no database driver here. The engine and the
//! front ends talk to the [`Store`] and [`ServerStore`] traits.
#![forbid(unsafe_code)]

pub mod codec;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
pub mod id;
mod records;

use std::future::Future;

pub use error::{AMBIGUOUS_SHOWN, Error, Result};
pub use records::*;

/// Where a store lives, from a URL: `sqlite:///abs/path.db`, `sqlite://rel/path.db` or
/// `sqlite:path.db` (the embedded default), or `postgres://…` (a server database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> std::result::Result<DatabaseUrl, String> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(format!("`{url}`: no file named (write sqlite:///path/to/opsbook.db)"));
            }
            return Ok(DatabaseUrl::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        // Shown without its user and password.
        let shown = match url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or(rest)),
            None => url.split('@').next_back().unwrap_or(url).to_string(),
        };
        Err(format!(
            "`{shown}`: not a database URL opsbook knows (sqlite:///path/to/opsbook.db, or postgres://user@host/db)"
        ))
    }

    /// The password in a PostgreSQL URL (`postgres://user:password@host/db`), as written
    /// and percent-decoded; none for SQLite.
    pub fn password(&self) -> Vec<String> {
        match self {
            DatabaseUrl::Sqlite(_) => Vec::new(),
            DatabaseUrl::Postgres(url) => password(url),
        }
    }
}

/// The password of a `scheme://user:password@host/…` URL, as written and percent-decoded.
fn password(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else { return Vec::new() };
    let Some((_, written)) = userinfo.split_once(':') else { return Vec::new() };
    let decoded = percent_decoded(written);
    vec![written.to_string(), decoded]
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What publishing a version does, decided the same way by every backend (inside its
/// transaction, from what it read there): `same_version` is what is already published
/// under this version (the text's hash and the bundle's), `latest` the newest published
/// version of the runbook. `Ok(Some(Unchanged))`: nothing to write; `Ok(None)`: write the
/// new version.
pub fn publish_rule(
    p: &Publish,
    same_version: Option<(&str, Option<&str>)>,
    latest: Option<&str>,
) -> Result<Option<Published>> {
    let e = &p.entry;
    if let Some((sha, bundle)) = same_version {
        let files = match (bundle, p.bundle_sha256.as_deref()) {
            _ if sha != e.latest_sha256 => None,
            (old, new) if old == new => return Ok(Some(Published::Unchanged)),
            (None, _) => Some("without the files beside it now"),
            (_, None) => Some("with files beside it, where none go now"),
            _ => Some("with other files beside it (`opsbook push --dry-run` lists what goes now)"),
        };
        let (name, version) = (&e.name, &e.latest_version);
        return Err(Error::Conflict(match files {
            None => format!(
                "{name} {version} is already published with different content; published versions never change, \
                 so bump the version"
            ),
            Some(files) => format!(
                "{name} {version} is already published with the same text but {files}; published versions never \
                 change, so bump the version, or leave the new files out with .opsbookignore"
            ),
        }));
    }
    if let Some(latest) = latest {
        let newer = match (semver::Version::parse(&e.latest_version), semver::Version::parse(latest)) {
            (Ok(new), Ok(old)) => new > old,
            _ => false,
        };
        if !newer {
            return Err(Error::Conflict(format!(
                "{} {} is not newer than the published {latest}; versions must increase",
                e.name, e.latest_version
            )));
        }
    }
    Ok(None)
}

/// A repeated submission with an idempotency key returns the execution `earlier` the key
/// was first used for, unless it asks for something else: another runbook, or other
/// parameters of the same version (as stored, secrets masked: a secret's value cannot be
/// compared; across versions, defaults differ and are not compared).
pub fn keyed_repeat(earlier: &Execution, exec: &Execution) -> Result<String> {
    let id = &earlier.id;
    if earlier.runbook_name != exec.runbook_name {
        return Err(Error::Mismatch(format!(
            "this Idempotency-Key was used for runbook `{}` (execution {id}), not `{}`: use a new key",
            earlier.runbook_name, exec.runbook_name
        )));
    }
    // Compared within one version: a retry after a new version resolved its defaults
    // anew, and is still the same request.
    if earlier.runbook_version == exec.runbook_version && earlier.params != exec.params {
        return Err(Error::Mismatch(format!(
            "this Idempotency-Key was used with other parameters (execution {id}): use a new key"
        )));
    }
    Ok(id.clone())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Everything the engine and front ends need from storage. Every method commits
/// before it returns, so a crash never loses an acknowledged state change.
pub trait Store: Send + Sync + Clone + 'static {
    /// Stores the exact text of a runbook version (no-op if already stored).
    fn save_runbook<'a>(&'a self, rb: &'a RunbookVersion) -> impl Future<Output = Result<()>> + Send;
    fn runbook<'a>(&'a self, sha256: &'a str) -> impl Future<Output = Result<RunbookVersion>> + Send;

    /// Creates an execution and its pending steps in one transaction.
    fn create_execution<'a>(
        &'a self,
        exec: &'a Execution,
        steps: &'a [StepRecord],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Writes an execution's state. With a `fence` (the owner its runner claimed it as),
    /// the write happens only while the execution is still held by that owner, checked
    /// in the same transaction; otherwise `Error::LostClaim` and nothing is written.
    /// The actor is not written: it is set at creation and never changes.
    fn update_execution<'a>(
        &'a self,
        exec: &'a Execution,
        fence: Option<&'a str>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn update_step<'a>(
        &'a self,
        step: &'a StepRecord,
        fence: Option<&'a str>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Records a finished attempt and, in the same transaction, the new state of the given
    /// steps (its own, and possibly the next step's start); fenced as `update_execution`.
    fn record_attempt<'a>(
        &'a self,
        attempt: &'a Attempt,
        steps: &'a [&'a StepRecord],
        fence: Option<&'a str>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Appends log lines (of one execution); with a `fence`, fenced as state writes are.
    fn append_logs<'a>(
        &'a self,
        lines: &'a [LogLine],
        fence: Option<&'a str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Finds an execution by full id or unique prefix (at least 4 characters).
    fn execution<'a>(&'a self, id_or_prefix: &'a str) -> impl Future<Output = Result<Execution>> + Send;
    fn steps<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<Vec<StepRecord>>> + Send;
    fn attempts<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<Vec<Attempt>>> + Send;
    fn executions<'a>(&'a self, filter: &'a ExecutionFilter) -> impl Future<Output = Result<Vec<Execution>>> + Send;
    fn logs<'a>(&'a self, query: &'a LogQuery) -> impl Future<Output = Result<Vec<LogLine>>> + Send;
    fn last_log_seq<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<i64>> + Send;
    /// Where each of `ids` that exists stands (its status and last log line), in no
    /// particular order: what live views poll, in one round trip for all the executions
    /// they follow, to see which changed.
    fn heads<'a>(&'a self, ids: &'a [String]) -> impl Future<Output = Result<Vec<Head>>> + Send;
    /// An execution's steps and the sequence number of its last log line (0 when it has
    /// none): what a runner loads before it goes on. One round trip where the backend can.
    /// (A wrapper such as `AnyStore` must hand this and `finish_execution` on, or the
    /// defaults below hide the backend's own.)
    fn steps_and_last_seq<'a>(
        &'a self,
        execution_id: &'a str,
    ) -> impl Future<Output = Result<(Vec<StepRecord>, i64)>> + Send {
        async move { Ok((self.steps(execution_id).await?, self.last_log_seq(execution_id).await?)) }
    }
    /// The child executions of execution `id` (started by its `runbook` steps), newest
    /// first, each with its steps.
    fn children<'a>(&'a self, id: &'a str) -> impl Future<Output = Result<Vec<(Execution, Vec<StepRecord>)>>> + Send {
        async move {
            let mut out = Vec::new();
            for child in self.executions(&ExecutionFilter::children(id)).await? {
                let steps = self.steps(&child.id).await?;
                out.push((child, steps));
            }
            Ok(out)
        }
    }
    /// The end of a run: the final attempt still to be recorded, if any (with its steps,
    /// as `record_attempt`), then the execution's state, both fenced as
    /// `update_execution`. One atomic write where the backend can.
    fn finish_execution<'a>(
        &'a self,
        exec: &'a Execution,
        last: Option<(&'a Attempt, &'a [&'a StepRecord])>,
        fence: Option<&'a str>,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            if let Some((attempt, steps)) = last {
                self.record_attempt(attempt, steps, fence).await?;
            }
            self.update_execution(exec, fence).await
        }
    }

    /// Records a decision (an approval, or a manual step's confirmation); one person
    /// decides once per step and phase.
    fn add_approval<'a>(&'a self, approval: &'a Approval) -> impl Future<Output = Result<()>> + Send;
    fn approvals<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<Vec<Approval>>> + Send;

    /// Records a person's rating of an execution; given again, it replaces theirs.
    fn add_feedback<'a>(&'a self, feedback: &'a Feedback) -> impl Future<Output = Result<()>> + Send;
    /// An execution's ratings, oldest first.
    fn feedback<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<Vec<Feedback>>> + Send;

    /// Extends the claim of `owner` on a running execution; returns whether cancel was requested.
    fn heartbeat<'a>(
        &'a self,
        execution_id: &'a str,
        owner: &'a str,
        lease_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn request_cancel<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<()>> + Send;
    /// Claims an execution that is not running or queued (to resume, roll back or cancel
    /// it) for `owner`, compare-and-set: only when no one holds it, its holder's lease
    /// lapsed, `owner` holds it already, or its holder is `take_over_from` (a runner known
    /// to be dead). `None` when someone else holds it (or it started running).
    fn claim_stopped<'a>(
        &'a self,
        execution_id: &'a str,
        owner: &'a str,
        lease_ms: i64,
        take_over_from: Option<&'a str>,
    ) -> impl Future<Output = Result<Option<Execution>>> + Send;
    /// Records the process group a step's attempt or rollback runs in (`PGID:IDENTITY`)
    /// once it has run a moment, or clears it (`None`) when it ended.
    fn set_process<'a>(
        &'a self,
        execution_id: &'a str,
        step_id: &'a str,
        process: Option<&'a str>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `(step id, process)` of the steps that recorded one.
    fn processes<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    /// Lets go of a claim of `owner` (nothing happens if someone else holds it).
    fn release<'a>(&'a self, execution_id: &'a str, owner: &'a str) -> impl Future<Output = Result<()>> + Send;
    /// Executions in `running` state, and `waiting` ones someone holds (a gate poll, a
    /// cancel, an override), for crash recovery.
    fn running(&self) -> impl Future<Output = Result<Vec<Execution>>> + Send;
}

/// What the server needs beyond running executions: the registry, the queue, tokens
/// and the audit trail.
pub trait ServerStore: Store {
    /// Publishes a runbook version. Identical content is a no-op (`Unchanged`); a new
    /// version must be greater than the newest one; a published version never changes.
    fn publish<'a>(&'a self, p: &'a Publish) -> impl Future<Output = Result<Published>> + Send;
    fn registry<'a>(&'a self, q: &'a RunbookQuery) -> impl Future<Output = Result<Vec<RegistryEntry>>> + Send;
    fn registry_entry<'a>(&'a self, name: &'a str) -> impl Future<Output = Result<RegistryEntry>> + Send;
    fn registry_versions<'a>(&'a self, name: &'a str) -> impl Future<Output = Result<Vec<PublishedVersion>>> + Send;
    /// Stores a bundle of files under its SHA-256 (no-op if stored already). The caller
    /// has checked that `sha256` is the digest of `content`.
    fn save_bundle<'a>(&'a self, sha256: &'a str, content: &'a [u8]) -> impl Future<Output = Result<()>> + Send;
    /// A stored bundle's bytes.
    fn bundle<'a>(&'a self, sha256: &'a str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// A published version and its exact text.
    fn registry_version<'a>(
        &'a self,
        name: &'a str,
        version: &'a str,
    ) -> impl Future<Output = Result<(PublishedVersion, String)>> + Send;
    /// Records a lifecycle transition. Archiving a runbook (it can never run again)
    /// removes its schedules in the same transaction; they are returned.
    fn set_lifecycle<'a>(&'a self, e: &'a LifecycleEvent) -> impl Future<Output = Result<Vec<ScheduleRecord>>> + Send;
    fn lifecycle_events<'a>(&'a self, name: &'a str) -> impl Future<Output = Result<Vec<LifecycleEvent>>> + Send;
    /// Records a review of a runbook.
    fn add_review<'a>(&'a self, review: &'a Review) -> impl Future<Output = Result<()>> + Send;
    /// The reviews of one runbook (or of all), oldest first.
    fn reviews<'a>(&'a self, name: Option<&'a str>) -> impl Future<Output = Result<Vec<Review>>> + Send;
    /// Ratings given since `since` (optionally on one runbook's executions), each with
    /// its execution's runbook, oldest first.
    fn feedback_since<'a>(
        &'a self,
        since: i64,
        runbook: Option<&'a str>,
    ) -> impl Future<Output = Result<Vec<(String, Feedback)>>> + Send;

    /// Creates an execution and appends `audit` (its record in the audit trail, with the
    /// execution's id as its target) in the same transaction, unless `(actor, key)` was
    /// used before: then returns the earlier id and appends nothing. No execution is ever
    /// queued unaudited.
    fn create_execution_once<'a>(
        &'a self,
        exec: &'a Execution,
        steps: &'a [StepRecord],
        idempotency_key: Option<&'a str>,
        audit: &'a NewAudit,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Claims the queued execution that has waited longest for a runner (since it was
    /// created, or since it last ran) for `owner` until the lease expires.
    fn claim_queued<'a>(
        &'a self,
        owner: &'a str,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Option<Execution>>> + Send;
    /// [`ServerStore::claim_queued`], with the execution's steps and last log sequence
    /// number (as [`Store::steps_and_last_seq`]). A backend that could read them in the
    /// same round trip would override it (and a wrapper then hand it on); PostgreSQL's
    /// one-statement version was measured slower, so none does.
    fn claim_next<'a>(&'a self, owner: &'a str, lease_ms: i64) -> impl Future<Output = Result<Option<Claimed>>> + Send {
        async move {
            let Some(execution) = self.claim_queued(owner, lease_ms).await? else { return Ok(None) };
            let (steps, last_seq) = self.steps_and_last_seq(&execution.id).await?;
            Ok(Some(Claimed { execution, steps, last_seq }))
        }
    }
    /// Holds a waiting execution (to poll its gate, cancel or override it) unless someone
    /// else holds it or moved it. It stays `waiting` meanwhile: that is what it does.
    fn claim_waiting<'a>(
        &'a self,
        execution_id: &'a str,
        owner: &'a str,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Option<Execution>>> + Send;
    /// Puts a waiting execution back in the queue (after an approval decision).
    fn requeue<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<bool>> + Send;
    /// Cancels a queued execution that no worker holds and none of whose steps started,
    /// in one conditional write: `false` if a worker took it (or it started) first.
    fn cancel_unstarted<'a>(
        &'a self,
        execution_id: &'a str,
        at: i64,
        error: &'a str,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn count_by_status(&self) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;
    /// Whether the database answers (a readiness check: one round trip, no table read).
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    /// Executions waiting in the queue for a worker.
    fn count_queued(&self) -> impl Future<Output = Result<i64>> + Send;
    /// Waiting executions by what they wait on: `(people, gate)`: people are approvals
    /// and manual steps; a gate is a gate step, or a gate's recheck holding a later step.
    fn count_waiting(&self) -> impl Future<Output = Result<(i64, i64)>> + Send;
    /// Waiting executions whose deadline has passed, each with whether it waits on a
    /// gate (to poll it) rather than an approval (to requeue, so it times out).
    fn expired_waits(&self, now: i64) -> impl Future<Output = Result<Vec<(String, bool)>>> + Send;

    fn create_token<'a>(&'a self, token: &'a Token, hash: &'a str) -> impl Future<Output = Result<()>> + Send;
    /// The token with this id and its stored hash. Comparing the hash (in constant
    /// time), expiry and revocation are the caller's to check.
    fn token<'a>(&'a self, id: &'a str) -> impl Future<Output = Result<Option<(Token, String)>>> + Send;
    /// Records that a token was accepted (only then: a refused one is not "used").
    fn token_used<'a>(&'a self, id: &'a str, at: i64) -> impl Future<Output = Result<()>> + Send;
    fn tokens(&self) -> impl Future<Output = Result<Vec<Token>>> + Send;
    fn revoke_token<'a>(&'a self, id: &'a str) -> impl Future<Output = Result<()>> + Send;

    /// Keeps (or replaces) an execution's sealed secrets.
    fn put_secrets<'a>(&'a self, s: &'a SealedSecrets) -> impl Future<Output = Result<()>> + Send;
    fn sealed_secrets<'a>(
        &'a self,
        execution_id: &'a str,
    ) -> impl Future<Output = Result<Option<SealedSecrets>>> + Send;
    fn delete_secrets<'a>(&'a self, execution_id: &'a str) -> impl Future<Output = Result<()>> + Send;
    /// Deletes the secrets of executions that ended (succeeded, failed, cancelled) or
    /// do not exist, keeping those created after `before` (one being queued right now);
    /// returns how many went.
    fn prune_secrets(&self, before: i64) -> impl Future<Output = Result<u64>> + Send;
    /// The keys the kept secrets are sealed with (their ids), each once.
    fn secret_key_ids(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    fn create_session<'a>(&'a self, s: &'a WebSession) -> impl Future<Output = Result<()>> + Send;
    /// The session whose cookie hashes to `hash`, ended or not (the caller checks).
    fn session<'a>(&'a self, hash: &'a str) -> impl Future<Output = Result<Option<WebSession>>> + Send;
    /// Ends a session (sign-out); ending an ended or unknown one is no error.
    fn end_session<'a>(&'a self, hash: &'a str, at: i64) -> impl Future<Output = Result<()>> + Send;
    /// Forgets sessions that expired or ended before `before`; returns how many.
    fn prune_sessions(&self, before: i64) -> impl Future<Output = Result<u64>> + Send;

    fn create_schedule<'a>(&'a self, s: &'a ScheduleRecord) -> impl Future<Output = Result<()>> + Send;
    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRecord>>> + Send;
    fn delete_schedule<'a>(&'a self, id: &'a str) -> impl Future<Output = Result<()>> + Send;
    fn due_schedules(&self, now: i64) -> impl Future<Output = Result<Vec<ScheduleRecord>>> + Send;
    fn schedule_ran<'a>(
        &'a self,
        id: &'a str,
        ran_at: i64,
        next: Option<i64>,
        result: &'a str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Whether an execution started by `actor` is still queued, running or waiting.
    fn has_active_execution<'a>(&'a self, actor: &'a str) -> impl Future<Output = Result<bool>> + Send;

    /// Executions created since `since` (optionally of one runbook), for analytics.
    fn analytics_rows<'a>(
        &'a self,
        since: i64,
        runbook: Option<&'a str>,
    ) -> impl Future<Output = Result<Vec<AnalyticsRow>>> + Send;

    fn record_notification<'a>(&'a self, a: &'a NotificationAttempt) -> impl Future<Output = Result<()>> + Send;
    fn notifications<'a>(
        &'a self,
        execution_id: &'a str,
    ) -> impl Future<Output = Result<Vec<NotificationAttempt>>> + Send;

    /// Appends to the hash-chained audit trail.
    fn append_audit<'a>(&'a self, record: &'a NewAudit) -> impl Future<Output = Result<AuditRecord>> + Send;
    fn audit<'a>(&'a self, f: &'a AuditFilter) -> impl Future<Output = Result<Vec<AuditRecord>>> + Send;
    /// Checks the whole chain: `Ok(count)` or a description of the first broken record.
    fn verify_audit(&self) -> impl Future<Output = Result<std::result::Result<i64, String>>> + Send;
}

/// The hash of an audit record: SHA-256 over the previous hash and the record's fields.
pub fn audit_hash(prev_hash: &str, seq: i64, at: i64, r: &NewAudit) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [prev_hash, &seq.to_string(), &at.to_string(), &r.actor, &r.action, &r.target, &r.request_id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(r.details.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Checks the audit chain record by record, in `seq` order, the same way for every
/// backend: feed each record to [`AuditChain::next`], then read [`AuditChain::count`].
#[derive(Debug, Default)]
pub struct AuditChain {
    expected_seq: i64,
    prev: String,
    count: i64,
}

impl AuditChain {
    pub fn new() -> AuditChain {
        AuditChain { expected_seq: 1, prev: String::new(), count: 0 }
    }

    /// The next record; `Err` names the first break: a missing, inserted, reordered or
    /// edited record.
    pub fn next(&mut self, r: AuditRecord) -> std::result::Result<(), String> {
        if r.seq != self.expected_seq {
            return Err(if r.seq > self.expected_seq {
                format!("record {} is missing (the next record is {})", self.expected_seq, r.seq)
            } else {
                format!("record {} is out of order", r.seq)
            });
        }
        if r.prev_hash != self.prev {
            return Err(format!(
                "record {} does not follow record {}: a record was deleted or inserted",
                r.seq,
                r.seq - 1
            ));
        }
        let fields = NewAudit {
            actor: r.actor,
            action: r.action,
            target: r.target,
            request_id: r.request_id,
            details: r.details,
        };
        if audit_hash(&self.prev, r.seq, r.at, &fields) != r.hash {
            return Err(format!("record {} was edited: its content no longer matches its hash", r.seq));
        }
        self.prev = r.hash;
        self.expected_seq += 1;
        self.count += 1;
        Ok(())
    }

    /// Records checked so far.
    pub fn count(&self) -> i64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::DatabaseUrl;

    #[test]
    fn database_urls() {
        assert_eq!(DatabaseUrl::parse("sqlite:///var/lib/o.db"), Ok(DatabaseUrl::Sqlite("/var/lib/o.db".into())));
        assert_eq!(DatabaseUrl::parse("sqlite://rel/o.db"), Ok(DatabaseUrl::Sqlite("rel/o.db".into())));
        assert_eq!(DatabaseUrl::parse("sqlite:o.db"), Ok(DatabaseUrl::Sqlite("o.db".into())));
        assert!(matches!(DatabaseUrl::parse("postgres://u@h/db"), Ok(DatabaseUrl::Postgres(_))));
        assert!(DatabaseUrl::parse("sqlite://").unwrap_err().contains("no file named"));
        let err = DatabaseUrl::parse("mysql://root:secret@h/db").unwrap_err();
        assert!(err.contains("not a database URL") && !err.contains("secret"), "{err}");
        assert!(err.starts_with("`mysql://h/db`: "), "the scheme is what is wrong: {err}");
        let url = DatabaseUrl::parse("postgres://ops:S3cret%21x@db:5432/opsbook?sslmode=require").unwrap();
        assert_eq!(url.password(), ["S3cret%21x", "S3cret!x"]);
        assert!(DatabaseUrl::parse("postgres://ops@db/opsbook").unwrap().password().is_empty());
        assert!(DatabaseUrl::parse("sqlite:///x.db").unwrap().password().is_empty());
    }
}
