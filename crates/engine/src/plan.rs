//! What a run would do, without running anything: each step rendered with the given
//! parameters (secrets masked), for `run --dry-run` and the web UI's run preview.

use opsbook_core::step::Rollback;
use opsbook_core::template::{self, Context};
use opsbook_core::{ParamValues, Runbook, StepKind};

use crate::kinds::aws_ssm;

/// One step as it would run.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    /// The rendered command, request, wait or question.
    pub action: String,
    /// A `run` step's own environment, rendered (secret parameters show as `***`).
    pub env: Vec<(String, String)>,
    /// The `when` expression and what it gives now (or why that is not known yet).
    pub when: Option<(String, String)>,
    pub timeout: String,
    pub attempts: u32,
    pub required: bool,
    /// The rendered rollback script.
    pub rollback: Option<String>,
}

/// The steps of `rb` rendered with `params`; a template that cannot render says so in
/// its place (a dry run shows everything, it does not stop at the first problem).
pub fn plan(rb: &Runbook, params: &ParamValues) -> Vec<PlannedStep> {
    let ctx = Context {
        params: params.masked(),
        execution_id: "<execution.id>".into(),
        placeholders: true,
        // Only steps with targets may name it.
        target: Some("<target>".into()),
        ..Context::default()
    };
    let render = |t: &str, shell: bool| {
        let r = if shell { template::render_shell(t, &ctx) } else { template::render_plain(t, &ctx) };
        r.unwrap_or_else(|e| format!("<cannot render: {e}>"))
    };
    let manual = |m: &opsbook_core::step::manual::ManualSpec| {
        let mut text = format!("manual: {}", render(&m.instructions.value, false));
        for item in &m.checklist {
            text.push_str(&format!("\n- [ ] {}", render(&item.value, false)));
        }
        text
    };
    let describe = |kind: &StepKind| match kind {
        StepKind::Run(script) => render(&script.template, true),
        // The request as a run would send it: its URL, headers and body.
        StepKind::Http(h) => match crate::kinds::http::Request::render(h, &ctx) {
            Ok(r) => {
                let mut text = format!("{} {}", h.method.as_str(), r.url);
                for (k, v) in &r.headers {
                    text.push_str(&format!("\n{k}: {v}"));
                }
                if let Some(body) = &r.body {
                    text.push_str(&format!("\n\n{body}"));
                }
                text
            }
            Err(e) => format!("{} <cannot render: {e}>", h.method.as_str()),
        },
        StepKind::AwsSsmCommand(c) => {
            aws_ssm::display_command(c, &ctx).unwrap_or_else(|| "aws_ssm_command <cannot render>".into())
        }
        StepKind::AwsSsmAutomation(a) => {
            aws_ssm::display_automation(a, &ctx).unwrap_or_else(|| "aws_ssm_automation <cannot render>".into())
        }
        StepKind::Sleep(d) => format!("sleep {}", d.duration),
        StepKind::Gate(g) => format!(
            "gate {} (on_blocked: {:?}, max_wait {}, poll {}{})",
            g.name(),
            g.on_blocked,
            g.max_wait(),
            g.poll(),
            if g.recheck.is_some() { ", rechecked between steps" } else { "" }
        )
        .to_lowercase(),
        StepKind::AwsLambda(l) => {
            let payload = match l.payload.as_ref().map(|p| template::render_json(p, &ctx)).transpose() {
                Ok(p) => p.unwrap_or_else(|| serde_json::json!({})).to_string(),
                Err(e) => format!("<cannot render: {e}>"),
            };
            let mut where_ = Vec::new();
            let target = l.target();
            if let Some(r) = &target.region {
                where_.push(format!("region {r}"));
            }
            if let Some(r) = &target.role_arn {
                where_.push(format!("as {r}"));
            }
            let where_ = if where_.is_empty() { String::new() } else { format!(" ({})", where_.join(", ")) };
            format!("aws_lambda {} {payload}{where_}", render(&l.function.value, false))
        }
        StepKind::Manual(m) => manual(m),
        StepKind::Runbook(c) => {
            let params: Vec<String> = c.params.iter().map(|(k, v)| format!("{k}={}", render(v, false))).collect();
            format!("runbook {} {}", c.callee, params.join(" ")).trim_end().to_string()
        }
        StepKind::Parallel(p) => {
            let branches: Vec<String> = (p.branches.iter())
                .map(|b| match &b.kind {
                    StepKind::Run(script) => format!("[{}] {}", b.id, render(&script.template, true)),
                    other => format!("[{}] {}", b.id, other.name()),
                })
                .collect();
            format!("parallel (at most {} at once, fail {}):\n{}", p.max, p.fail.as_str(), branches.join("\n"))
        }
        StepKind::Approval(a) => {
            let msg = a.message.as_ref().map(|m| render(&m.value, false)).unwrap_or_default();
            let who: Vec<&str> = a.approvers.iter().map(|a| a.value.as_str()).collect();
            format!(
                "approval by {} ({} needed) {msg}",
                if who.is_empty() { "anyone".into() } else { who.join(", ") },
                a.min_approvals
            )
        }
    };
    rb.steps
        .iter()
        .map(|s| {
            let mut action = describe(&s.kind);
            if let Some(t) = &s.targets {
                let on = match &t.source {
                    opsbook_core::step::targets::Source::Hosts(h) => {
                        h.iter().map(|h| render(h, false)).collect::<Vec<_>>().join(", ")
                    }
                    opsbook_core::step::targets::Source::Inventory { path, group } => {
                        format!("{path}{}", group.as_ref().map(|g| format!(" group {g}")).unwrap_or_default())
                    }
                    opsbook_core::step::targets::Source::Tags(tags) => {
                        let tags: Vec<String> = (tags.iter())
                            .map(|(k, v)| {
                                format!("{k}={}", v.iter().map(|v| render(v, false)).collect::<Vec<_>>().join("|"))
                            })
                            .collect();
                        format!("the instances tagged {}", tags.join(", "))
                    }
                };
                action = format!("on each of {on} (via {}): {action}", t.via.as_str());
            }
            let env = match &s.kind {
                StepKind::Run(script) => script
                    .env
                    .iter()
                    .map(|(k, v)| {
                        let value =
                            template::render_env(k, v, &ctx).unwrap_or_else(|e| format!("<cannot render: {e}>"));
                        (k.clone(), value)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let when = s.when.as_ref().map(|w| {
                // Nothing has run, so what earlier steps output is not known yet.
                let v = if w.contains("steps.") {
                    "unknown until it runs (it reads earlier steps' outputs)".to_string()
                } else {
                    template::eval_condition(w, &ctx).map(|b| b.to_string()).unwrap_or_else(|e| format!("error: {e}"))
                };
                (w.clone(), v)
            });
            PlannedStep {
                id: s.id.clone(),
                name: s.name.clone(),
                kind: s.kind.name(),
                action,
                env,
                when,
                timeout: s.timeout.to_string(),
                attempts: s.attempts(),
                required: s.required,
                rollback: s.rollback.as_ref().map(|r| match r {
                    Rollback::Run(script) => render(&script.template, true),
                    Rollback::Aws { kind, .. } => describe(kind),
                    Rollback::Manual(m) => manual(m),
                }),
            }
        })
        .collect()
}
