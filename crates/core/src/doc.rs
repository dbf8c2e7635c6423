//! A runbook written out for people who read it during an incident without the tool
//! (`opsbook doc`): purpose, prerequisites, parameters, every step with its command and
//! rollback, approvals, gates and manual checklists. Markdown or a standalone HTML page.

use crate::step::{Rollback, StepKind};
use crate::{CheckedValidation, OnFailure, Runbook, Step};

/// How the document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
}

/// One piece of the document.
enum Block {
    Heading(u8, String),
    Para(String),
    /// `label: text` lines.
    Facts(Vec<(String, String)>),
    List(Vec<String>),
    Checklist(Vec<String>),
    Code(String),
    Table(Vec<&'static str>, Vec<Vec<String>>),
}

/// The document of `rb`.
pub fn render(rb: &Runbook, format: Format) -> String {
    let blocks = blocks(rb);
    match format {
        Format::Markdown => markdown(&blocks),
        Format::Html => html(&rb.title, &blocks),
    }
}

fn blocks(rb: &Runbook) -> Vec<Block> {
    let mut b = vec![Block::Heading(1, rb.title.clone())];
    let mut facts = vec![
        ("Runbook".to_string(), format!("{} v{}", rb.name, rb.version)),
        ("Type".to_string(), rb.runbook_type.as_str().replace('_', " ")),
        ("Status".to_string(), rb.status.as_str().to_string()),
    ];
    if let Some(o) = &rb.owner {
        facts.push(("Owner".into(), o.clone()));
    }
    if !rb.tags.is_empty() {
        facts.push(("Tags".into(), rb.tags.join(", ")));
    }
    if let Some(r) = &rb.review {
        let last = r.last_reviewed.map(|d| format!(", last reviewed {d}")).unwrap_or_default();
        facts.push(("Review".into(), format!("every {}{last}", r.every)));
    }
    if let Some(d) = rb.manual_duration {
        facts.push(("By hand".into(), format!("about {d}")));
    }
    let on_failure = match rb.on_failure {
        OnFailure::Rollback => "the rollbacks of the steps that succeeded run, newest first",
        OnFailure::Stop => "it stops where it failed; nothing is rolled back by itself",
    };
    facts.push(("On failure".into(), on_failure.into()));
    b.push(Block::Facts(facts));
    b.push(Block::Heading(2, "Purpose".into()));
    b.push(Block::Para(rb.description.clone().unwrap_or_else(|| "(no description)".into())));

    if !rb.prerequisites.is_empty() {
        b.push(Block::Heading(2, "Prerequisites".into()));
        b.push(Block::Checklist(
            rb.prerequisites
                .iter()
                .map(|p| match &p.check {
                    Some(c) => format!("{} (checked by: `{}`)", p.description, c.template.trim()),
                    None => p.description.clone(),
                })
                .collect(),
        ));
    }

    if !rb.params.is_empty() {
        b.push(Block::Heading(2, "Parameters".into()));
        let rows = rb
            .params
            .iter()
            .map(|p| {
                let s = &p.spec;
                let default = match (&s.default, p.is_secret()) {
                    (_, true) => s.from.as_ref().map(|f| format!("from {f}")).unwrap_or_default(),
                    (Some(v), _) => v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
                    (None, _) => String::new(),
                };
                let mut rule = Vec::new();
                if !s.values.is_empty() {
                    rule.push(format!("one of {}", s.values.join(", ")));
                }
                if let Some(pat) = &s.pattern {
                    rule.push(format!("matches {pat}"));
                }
                if let Some(m) = s.min {
                    rule.push(format!("≥ {m}"));
                }
                if let Some(m) = s.max {
                    rule.push(format!("≤ {m}"));
                }
                vec![
                    p.name.clone(),
                    s.ty.as_str().to_string(),
                    if s.required { "yes".into() } else { "no".into() },
                    default,
                    [s.description.clone().unwrap_or_default(), rule.join("; ")]
                        .into_iter()
                        .filter(|t| !t.is_empty())
                        .collect::<Vec<_>>()
                        .join(". "),
                ]
            })
            .collect();
        b.push(Block::Table(vec!["Name", "Type", "Required", "Default", "Meaning"], rows));
    }

    b.push(Block::Heading(2, "Steps".into()));
    b.push(Block::Para(
        "In `{{ params.NAME }}`, put the parameter's value; `{{ steps.ID.outputs.KEY }}` is an output of an \
         earlier step: the `KEY=value` line it wrote to the file `$OPSBOOK_OUTPUT` names."
            .into(),
    ));
    for (i, s) in rb.steps.iter().enumerate() {
        step(&mut b, i + 1, s);
    }

    if !rb.schedules.is_empty() || !rb.triggers.is_empty() {
        b.push(Block::Heading(2, "How it starts by itself".into()));
        let mut items: Vec<String> =
            rb.schedules.iter().map(|s| format!("on schedule `{}` ({})", s.cron, s.timezone)).collect();
        items.extend(rb.triggers.iter().map(|t| format!("on the event trigger `{}`", t.name)));
        b.push(Block::List(items));
    }
    b
}

fn step(b: &mut Vec<Block>, n: usize, s: &Step) {
    b.push(Block::Heading(3, format!("{n}. {} (`{}`)", s.name, s.id)));
    if let Some(d) = &s.description {
        b.push(Block::Para(d.clone()));
    }
    let mut facts = vec![("Kind".to_string(), s.kind.name().replace('_', " "))];
    if let Some(w) = &s.when {
        facts.push(("Only when".into(), format!("`{w}`")));
    }
    let mut limits = format!("times out after {}", s.timeout);
    if s.attempts() > 1 {
        limits.push_str(&format!(", up to {} attempts", s.attempts()));
    }
    // How long people or a gate may take is said with the step itself.
    if !matches!(s.kind, StepKind::Approval(_) | StepKind::Manual(_) | StepKind::Parallel(_) | StepKind::Gate(_)) {
        facts.push(("Limits".into(), limits));
    }
    if let Some(t) = &s.targets {
        let on = match &t.source {
            crate::step::targets::Source::Hosts(h) => h.join(", "),
            crate::step::targets::Source::Inventory { path, group: Some(g) } => format!("group `{g}` of {path}"),
            crate::step::targets::Source::Inventory { path, group: None } => format!("every host of {path}"),
            crate::step::targets::Source::Tags(tags) => {
                let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={}", v.join("|"))).collect();
                format!("the instances SSM manages tagged {}", tags.join(", "))
            }
        };
        let amount = |a: crate::step::targets::Amount| match a {
            crate::step::targets::Amount::Count(n) => n.to_string(),
            crate::step::targets::Amount::Percent(p) => format!("{p}%"),
        };
        facts.push((
            "Targets".into(),
            format!(
                "{on} ({}, {} at a time, at most {} failing)",
                t.via.as_str(),
                amount(t.max_concurrency),
                amount(t.max_errors)
            ),
        ));
    }
    if !s.required {
        facts.push(("Required".into(), "no: a failure is noted and the run goes on".into()));
    }
    if s.idempotent {
        facts.push(("Idempotent".into(), "yes: safe to run again".into()));
    }
    b.push(Block::Facts(facts));
    action(b, &s.kind);
    let checks: Vec<String> = s
        .validate
        .iter()
        .map(|v| match v {
            CheckedValidation::ExitCode(crate::document::ExitCodes::One(c)) => format!("the exit code is {c}"),
            CheckedValidation::ExitCode(crate::document::ExitCodes::Many(cs)) => {
                let codes: Vec<String> = cs.iter().map(i32::to_string).collect();
                format!("the exit code is one of {}", codes.join(", "))
            }
            CheckedValidation::OutputContains(t) => format!("the output contains `{t}`"),
            CheckedValidation::OutputMatches(r) => format!("the output matches `{}`", r.as_str()),
            CheckedValidation::Json { path, equals } => format!("`{path}` in the result equals `{equals}`"),
            CheckedValidation::Lambda(f) => format!("the Lambda function `{f}` accepts the result"),
        })
        .collect();
    if !checks.is_empty() {
        b.push(Block::Para("It succeeded when:".into()));
        b.push(Block::List(checks));
    }
    match &s.rollback {
        None => b.push(Block::Para("Rollback: none.".into())),
        Some(Rollback::Run(script)) => {
            b.push(Block::Para("Rollback (undoes this step):".into()));
            // A rollback runs with its step's environment.
            let env = match &s.kind {
                StepKind::Run(step) if script.env.is_empty() => &step.env,
                _ => &script.env,
            };
            b.push(Block::Code(with_env(&script.template, env)));
        }
        Some(Rollback::Aws { kind, .. }) => {
            b.push(Block::Para("Rollback (undoes this step):".into()));
            action(b, kind);
        }
        Some(Rollback::Manual(m)) => {
            b.push(Block::Para(format!("Rollback, by hand: {}", m.instructions.value.trim())));
            if !m.checklist.is_empty() {
                b.push(Block::Checklist(m.checklist.iter().map(|i| i.value.clone()).collect()));
            }
        }
    }
}

/// A script as one would run it by hand: its environment set first.
fn with_env(template: &str, env: &std::collections::BTreeMap<String, String>) -> String {
    // Each value quoted for the shell, as the runner hands it over: literally.
    // (A NUL byte, which no shell takes, is left out: shlex then always quotes.)
    let quote = |v: &str| shlex::try_quote(&v.replace('\0', "")).map(|q| q.into_owned()).unwrap_or_default();
    let mut code: Vec<String> = env.iter().map(|(k, v)| format!("export {k}={}", quote(v))).collect();
    code.push(template.trim_end().to_string());
    code.join("\n")
}

/// What a step (or an AWS rollback) does, as one would do it by hand.
fn action(b: &mut Vec<Block>, kind: &StepKind) {
    match kind {
        StepKind::Run(script) => {
            let shell = match script.shell {
                crate::document::Shell::Sh => "sh",
                crate::document::Shell::Bash => "bash",
            };
            let mut how = format!("Run ({shell}");
            if let Some(dir) = &script.workdir {
                how.push_str(&format!(", in `{dir}`"));
            }
            b.push(Block::Para(format!("{how}):")));
            b.push(Block::Code(with_env(&script.template, &script.env)));
        }
        StepKind::Http(h) => {
            let mut req = format!("{} {}", h.method.as_str(), h.url.value);
            for (k, v) in &h.headers {
                req.push_str(&format!("\n{k}: {}", v.value));
            }
            if let Some(body) = &h.body {
                req.push_str(&format!("\n\n{}", body.value));
            }
            b.push(Block::Para("Send:".into()));
            b.push(Block::Code(req));
            if !h.expect_status.is_empty() {
                let codes: Vec<String> = h.expect_status.iter().map(u16::to_string).collect();
                b.push(Block::Para(format!("Expect status {}.", codes.join(" or "))));
            }
        }
        StepKind::Sleep(s) => b.push(Block::Para(format!("Wait {}.", s.duration))),
        StepKind::Approval(a) => {
            let who: Vec<&str> = a.approvers.iter().map(|a| a.value.as_str()).collect();
            let who = if who.is_empty() { "anyone but the requester".to_string() } else { who.join(", ") };
            let msg = a.message.as_ref().map(|m| format!(" They are asked: “{}”", m.value.trim())).unwrap_or_default();
            b.push(Block::Para(format!("Approval: {} approval(s) needed, from {who}.{msg}", a.min_approvals)));
        }
        StepKind::Manual(m) => {
            b.push(Block::Para(format!("By hand: {}", m.instructions.value.trim())));
            if !m.checklist.is_empty() {
                b.push(Block::Checklist(m.checklist.iter().map(|i| i.value.clone()).collect()));
            }
            b.push(Block::Para(format!("Confirm within {} (`opsbook confirm ID`).", m.wait())));
        }
        StepKind::Gate(g) => {
            let blocked = match g.on_blocked {
                crate::step::gate::OnBlocked::Wait => format!("wait for it to clear (at most {})", g.max_wait()),
                crate::step::gate::OnBlocked::Fail => "stop (the step fails)".into(),
            };
            let recheck = if g.recheck.is_some() { " It is checked again before every later step." } else { "" };
            let (what, verdict) = match &g.use_gate {
                Some(name) => {
                    (format!("Health gate `{name}`"), format!(" (`opsbook gate check {name}` shows the verdict.)"))
                }
                None => {
                    let kinds: Vec<&str> = g.sources.iter().map(|s| s.value.kind()).collect();
                    (format!("Health gate of its own ({})", kinds.join(", ")), String::new())
                }
            };
            b.push(Block::Para(format!(
                "{what}: go on only while no incident, alert or freeze window blocks it; if it does, \
                 {blocked}.{recheck}{verdict}"
            )));
        }
        StepKind::AwsLambda(l) => {
            let payload = l.payload.as_ref().map(|p| format!(" with payload\n{p:#}")).unwrap_or_default();
            b.push(Block::Para("Invoke the AWS Lambda function:".into()));
            b.push(Block::Code(format!("{}{payload}", l.function.value)));
        }
        StepKind::AwsSsmCommand(c) => {
            let targets = if c.targets.instance_ids.is_empty() {
                format!("instances tagged {}", serde_json::Value::Object(c.targets.tags.clone().into_iter().collect()))
            } else {
                c.targets.instance_ids.join(", ")
            };
            let params = serde_json::Value::Object(c.parameters.clone().into_iter().collect());
            b.push(Block::Para(format!("Run the SSM document `{}` on {targets}, with:", c.document.value)));
            b.push(Block::Code(format!("{params:#}")));
        }
        StepKind::AwsSsmAutomation(a) => {
            let params = serde_json::Value::Object(a.parameters.clone().into_iter().collect());
            b.push(Block::Para(format!("Start the SSM Automation runbook `{}`, with:", a.document.value)));
            b.push(Block::Code(format!("{params:#}")));
        }
        StepKind::Parallel(p) => {
            let fail = match p.fail {
                crate::step::parallel::FailMode::Fast => "the first that fails stops the others",
                crate::step::parallel::FailMode::All => "all run, then the step fails if any did",
            };
            b.push(Block::Para(format!("Side by side, at most {} at a time ({fail}):", p.max)));
            for branch in &p.branches {
                b.push(Block::Para(format!("Branch `{}` (times out after {}):", branch.id, branch.timeout)));
                action(b, &branch.kind);
                if let Some(Rollback::Run(script)) = &branch.rollback {
                    b.push(Block::Para(format!("Rollback of `{}`:", branch.id)));
                    b.push(Block::Code(script.template.trim_end().to_string()));
                }
            }
        }
        StepKind::Runbook(c) => {
            let what = match &c.callee {
                crate::step::call::Callee::File(f) => format!("the runbook in `{f}`"),
                crate::step::call::Callee::Name { name, version: Some(v) } => {
                    format!("the published runbook `{name}` (version {v})")
                }
                crate::step::call::Callee::Name { name, version: None } => format!("the published runbook `{name}`"),
            };
            let how = "its own execution, with its own approvals and rollbacks; it is rolled back as a whole \
                       when this runbook rolls back";
            if c.params.is_empty() {
                b.push(Block::Para(format!("Run {what} ({how}).")));
            } else {
                b.push(Block::Para(format!("Run {what} ({how}), with:")));
                let lines: Vec<String> = c.params.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                b.push(Block::Code(lines.join("\n")));
            }
        }
    }
}

/// Text for Markdown: HTML in it (an owner, a description) shown as text, not passed
/// to whatever renders the page; `` `code` `` spans kept as they are.
fn md(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push_str(&part.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"));
        }
    }
    out
}

fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                out.push_str(&format!("{} {}\n\n", "#".repeat(usize::from(*level)), md(text)));
            }
            Block::Para(text) => out.push_str(&format!("{}\n\n", md(text))),
            Block::Facts(facts) => {
                for (k, v) in facts {
                    out.push_str(&format!("- **{}:** {}\n", md(k), md(v)));
                }
                out.push('\n');
            }
            Block::List(items) => {
                for i in items {
                    out.push_str(&format!("- {}\n", md(i)));
                }
                out.push('\n');
            }
            Block::Checklist(items) => {
                for i in items {
                    out.push_str(&format!("- [ ] {}\n", md(i)));
                }
                out.push('\n');
            }
            Block::Code(text) => {
                // A fence longer than any run of backquotes inside.
                let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
                let fence = "`".repeat(longest.max(2) + 1);
                out.push_str(&format!("{fence}\n{text}\n{fence}\n\n"));
            }
            Block::Table(header, rows) => {
                let cell = |c: &str| md(c).replace('|', "\\|").replace('\n', " ");
                out.push_str(&format!("| {} |\n", header.join(" | ")));
                out.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
                for r in rows {
                    let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
                out.push('\n');
            }
        }
    }
    out.trim_end().to_string() + "\n"
}

/// Text for HTML, with `` `code` `` spans set as code.
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            out.push_str(part);
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(title: &str, blocks: &[Block]) -> String {
    let mut body = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => body.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text))),
            Block::Para(text) => body.push_str(&format!("<p>{}</p>\n", inline(text))),
            Block::Facts(facts) => {
                body.push_str("<dl>\n");
                for (k, v) in facts {
                    body.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(k), inline(v)));
                }
                body.push_str("</dl>\n");
            }
            Block::List(items) => {
                body.push_str("<ul>\n");
                for i in items {
                    body.push_str(&format!("<li>{}</li>\n", inline(i)));
                }
                body.push_str("</ul>\n");
            }
            Block::Checklist(items) => {
                body.push_str("<ul class=\"checklist\">\n");
                for i in items {
                    body.push_str(&format!("<li><label><input type=\"checkbox\"> {}</label></li>\n", inline(i)));
                }
                body.push_str("</ul>\n");
            }
            Block::Code(text) => body.push_str(&format!("<pre><code>{}</code></pre>\n", escape(text))),
            Block::Table(header, rows) => {
                body.push_str("<table>\n<thead><tr>");
                for h in header {
                    body.push_str(&format!("<th>{h}</th>"));
                }
                body.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    body.push_str("<tr>");
                    for c in r {
                        body.push_str(&format!("<td>{}</td>", inline(c)));
                    }
                    body.push_str("</tr>\n");
                }
                body.push_str("</tbody>\n</table>\n");
            }
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
         body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\n\
         pre{{background:#f4f4f4;padding:.75rem;overflow-x:auto}}code{{font-family:ui-monospace,monospace}}\n\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}\n\
         dt{{font-weight:600;float:left;clear:left;width:8rem}}dd{{margin-left:8.5rem}}\n\
         .checklist{{list-style:none;padding-left:0}}\n@media print{{pre{{white-space:pre-wrap}}}}\n\
         </style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}
