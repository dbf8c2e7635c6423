//! `opsbook new NAME --type TYPE`: write a commented runbook to start from.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use opsbook_core::RunbookType;

use super::{EXIT_OK, usage};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The runbook's name (lowercase letters, digits, dashes)
    pub name: String,
    /// deployment, maintenance, incident_response, backup_restore, scaling or monitoring
    #[arg(long = "type", value_name = "TYPE")]
    pub runbook_type: String,
    /// Where to write it (default: NAME.yaml in the current directory; `-` for standard output)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Overwrite the file if it exists
    #[arg(long)]
    pub force: bool,
}

pub fn exec(args: Args) -> Result<u8> {
    let Some(t) = RunbookType::parse(&args.runbook_type) else {
        let all: Vec<&str> = RunbookType::ALL.iter().map(|t| t.as_str()).collect();
        let hint = opsbook_core::diagnostic::did_you_mean(&args.runbook_type, &all)
            .map(|m| format!(" (did you mean `{m}`?)"))
            .unwrap_or_default();
        return Err(usage(format!("unknown type `{}`{hint}: use one of {}", args.runbook_type, all.join(", "))));
    };
    let text = template(&args.name, t);
    if let Err(diags) = opsbook_core::parse(&text) {
        let why = diags.first().map(|d| d.message.clone()).unwrap_or_default();
        return Err(usage(format!("`{}` cannot be a runbook name: {why}", args.name)));
    }
    let path = args.output.unwrap_or_else(|| PathBuf::from(format!("{}.yaml", args.name)));
    if path.as_os_str() == "-" {
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(EXIT_OK);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(!args.force)
        .create(args.force)
        .truncate(args.force)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => usage(format!(
                "{} exists already: choose another name with -o, or overwrite it with --force",
                path.display()
            )),
            _ => usage(format!("cannot create {}: {e}", path.display())),
        })?;
    f.write_all(text.as_bytes())?;
    // A draft may be dry-run as it is; running it for real needs --allow-draft (or status: active).
    let shown = path.display().to_string();
    let arg = if shown.contains(char::is_whitespace) { format!("'{shown}'") } else { shown.clone() };
    println!("wrote {shown} — try `opsbook run {arg} --dry-run -p environment=staging`, and `opsbook test {arg}`");
    Ok(EXIT_OK)
}

fn template(name: &str, t: RunbookType) -> String {
    let title: String = name
        .split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    let today = jiff::Zoned::now().date();
    format!(
        r#"# yaml-language-server: $schema=opsbook.schema.json   (generate it with `opsbook schema > opsbook.schema.json`)
apiVersion: opsbook/v1
kind: Runbook
metadata:
  name: {name}                      # identity: lowercase letters, digits, dashes
  title: {title}
  description: What this runbook does and when to use it.
  type: {t}
  version: 0.1.0                    # semver; bump it on every change
  status: draft                     # draft | active | deprecated | archived (drafts need --allow-draft)
  owner: your-team
  tags: [{t}]
  review: {{ every: 90d, last_reviewed: {today} }}

spec:
  # Shown before the run; a `check` must exit 0 before any step runs.
  prerequisites:
    - description: You are on the right machine
      check: {{ run: "test -d /tmp" }}

  # Typed parameters: string, integer, number, boolean, enum, secret.
  # Every value is checked before anything runs.
  parameters:
    environment: {{ type: enum, values: [staging, production], required: true }}
    batch_size: {{ type: integer, default: 10, min: 1, max: 100 }}
    # api_token: {{ type: secret }}   # secrets are masked in logs, outputs and history

  on_failure: rollback              # rollback (default): undo succeeded steps, newest first | stop

  steps:
    - id: prepare
      name: Prepare
      # {{{{ ... }}}} values are quoted for where they land (bare, "…", '…', here-documents):
      # the shell always reads back exactly the value.
      run: |
        echo "preparing {{{{ params.environment }}}}" in batches of {{{{ params.batch_size }}}}
        echo "started=$(date +%s)" >> "$OPSBOOK_OUTPUT"   # publish an output
      timeout: 5m
      retries: {{ count: 2, delay: 5s, backoff: 2.0, max_delay: 1m }}
      validate:
        - exit_code: 0
        - output_contains: preparing
      rollback: {{ run: echo "undo prepare" }}

    - id: confirm
      when: "params.environment == 'production'"   # skipped unless true
      approval: {{ approvers: ["role:oncall"], min_approvals: 1, timeout: 4h, message: "Go ahead in {{{{ params.environment }}}}?" }}

    - id: apply
      name: Apply the change
      run: echo applying, prepare started at {{{{ steps.prepare.outputs.started }}}}
      idempotent: true              # safe to re-run after a crash

# `opsbook test` runs these with every step mocked (nothing runs); see docs/quality.md.
tests:
  - name: staging runs every step but the approval
    params: {{ environment: staging }}
    mocks:
      prepare: {{ stdout: "preparing staging in batches of 10", outputs: {{ started: "1700000000" }} }}
    expect:
      status: succeeded
      ran: [prepare, apply]
      skipped: [confirm]
      rendered: {{ apply: "echo applying, prepare started at 1700000000" }}
"#,
        t = t.as_str()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_is_a_valid_runbook() {
        for t in opsbook_core::RunbookType::ALL {
            let text = super::template("my-runbook", t);
            if let Err(d) = opsbook_core::parse(&text) {
                panic!("{t:?}: {}", d[0].render("new.yaml", &text));
            }
        }
    }
}
