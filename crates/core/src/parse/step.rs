//! The checks of one step: its kind (with the AWS kinds' fields), its validations and
//! its rollback.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde_saphyr::{Location, Spanned};

use super::Checker;
use crate::diagnostic::{Diagnostic, Pos};
use crate::document::{RawStep, Validation};
use crate::step::aws::{self, LambdaSpec, SsmAutomationSpec, SsmCommandSpec};
use crate::step::call::{CallSpec, Callee, RawCall};
use crate::step::parallel::{ParallelSpec, RawParallel};
use crate::step::{Rollback, StepKind, approval::Approver, run::Script, sleep::SleepSpec};
use crate::template::{self, Scope};

/// What is said of a step with no kind key (before the list of them).
pub(super) const DOES_NOTHING: &str = "does nothing: set exactly one of";
use crate::{CheckedValidation, Step};

impl Checker<'_> {
    /// Checks a `runbook` step: one of `file` or `name`, a version requirement only with
    /// a name, parameter names and templates.
    fn call(&mut self, c: RawCall, at: &Location, id: &str, scope: &Scope<'_>) -> StepKind {
        let callee = match (c.file, c.name) {
            (Some(file), None) => {
                if c.version.is_some() {
                    self.err(
                        at,
                        format!("step `{id}`: runbook.version goes with runbook.name (a file is the version it is)"),
                    );
                }
                if file.value.trim().is_empty()
                    || file.value.contains("{{")
                    || file.value.contains("{%")
                    || std::path::Path::new(&file.value).is_absolute()
                {
                    self.err(&file.referenced, "runbook.file: a path relative to this runbook, without templates");
                }
                Callee::File(file.value)
            }
            (None, Some(name)) => {
                let version = c.version.and_then(|v| match semver::VersionReq::parse(v.value.trim()) {
                    Ok(req) => Some(req),
                    Err(e) => {
                        let msg = format!(
                            "runbook.version: `{}` is not a version requirement ({e}); e.g. ^1, ~1.4, =1.4.2",
                            v.value
                        );
                        self.err(&v.referenced, msg);
                        None
                    }
                });
                if !super::is_slug(&name.value) {
                    self.err(&name.referenced, format!("runbook.name: `{}` is not a runbook name", name.value));
                }
                Callee::Name { name: name.value, version }
            }
            (Some(_), Some(_)) => {
                self.err(at, format!("step `{id}`: runbook sets file and name: set one"));
                Callee::File(String::new())
            }
            (None, None) => {
                self.err(at, format!("step `{id}`: runbook names no runbook: set file (a path) or name (published)"));
                Callee::File(String::new())
            }
        };
        let mut params = Vec::new();
        for (name, value) in c.params {
            if !crate::params::is_param_name(&name) {
                self.err(&value.referenced, format!("runbook.params: `{name}` is not a parameter name"));
            }
            self.template(&value, false, scope, &format!("runbook.params.{name}"));
            params.push((name, value.value));
        }
        StepKind::Runbook(CallSpec { callee, params })
    }

    pub(super) fn step(
        &mut self,
        raw: Spanned<RawStep>,
        scope: &Scope<'_>,
        rollback_scope: &Scope<'_>,
    ) -> Option<Step> {
        let at = raw.referenced;
        let mut s = raw.value;
        let id = s.id.value.clone();
        if !is_step_id(&id) {
            let msg = format!("invalid step id `{id}`: use lowercase letters, digits and _, starting with a letter");
            self.err(&s.id.referenced, msg);
        }
        let n = self.diags.len();
        if let Some(name) = s.name.as_ref().filter(|n| ["{{", "{%", "{#"].iter().any(|t| n.value.contains(t))) {
            let msg = format!(
                "step `{id}`: name: a step's name is shown as written, templates are not rendered in it; \
                 name the step plainly (its script or message can show values)"
            );
            self.err(&name.referenced, msg);
        }
        let set: Vec<&str> = [
            s.run.is_some().then_some("run"),
            s.http.is_some().then_some("http"),
            s.sleep.is_some().then_some("sleep"),
            s.approval.is_some().then_some("approval"),
            s.manual.is_some().then_some("manual"),
            s.gate.is_some().then_some("gate"),
            s.aws_lambda.is_some().then_some("aws_lambda"),
            s.aws_ssm_command.is_some().then_some("aws_ssm_command"),
            s.aws_ssm_automation.is_some().then_some("aws_ssm_automation"),
            s.parallel.is_some().then_some("parallel"),
            s.runbook.is_some().then_some("runbook"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.len() != 1 {
            let msg = if set.is_empty() {
                format!("step `{id}` {DOES_NOTHING} {}", crate::step::KIND_KEYS.join(", "))
            } else {
                format!(
                    "step `{id}` sets {}: set exactly one of {}",
                    set.join(" and "),
                    crate::step::KIND_KEYS.join(", ")
                )
            };
            self.err(&at, msg);
            return None;
        }
        let is_run = s.run.is_some();
        if !is_run && (s.shell.is_some() || !s.env.is_empty() || s.workdir.is_some()) {
            self.err(&at, format!("step `{id}`: shell, env and workdir apply only to run steps"));
        }
        let targets = s.targets.as_ref().and_then(|t| self.targets(t, &at, &id, is_run, scope));
        if s.workdir.as_ref().is_some_and(|w| ["{{", "{%", "{#"].iter().any(|t| w.contains(t))) {
            let msg = format!(
                "step `{id}`: workdir is a directory as written, templates are not rendered in it; \
                 write it plainly, or `cd` in the script (cd {{{{ params.dir }}}})"
            );
            self.err(&at, msg);
        }
        if s.targets.as_ref().is_some_and(|t| t.via == crate::step::targets::Via::Ssh) && s.workdir.is_some() {
            self.err(&at, format!("step `{id}`: workdir is a local directory; over SSH a script starts in the remote user's home (cd there in the script)"));
        }
        if s.targets.as_ref().is_some_and(|t| t.via == crate::step::targets::Via::Ssm) && s.workdir.is_some() {
            self.err(&at, format!("step `{id}`: workdir is a local directory; through SSM a script starts in SSM's own directory on the instance (cd in the script)"));
        }
        if targets.is_some()
            && let Some(r) = &s.rollback
            && r.run.is_none()
            && (r.aws_lambda.is_some() || r.aws_ssm_command.is_some() || r.aws_ssm_automation.is_some())
        {
            self.err(&at, format!("step `{id}`: a step with targets rolls back with `run` (once per target it succeeded on) or `manual`"));
        }
        // With targets, the step's templates (and its rollback's) know `target`.
        let (scope, rollback_scope) = if s.targets.is_some() {
            (&Scope { target: true, ..*scope }, &Scope { target: true, ..*rollback_scope })
        } else {
            (scope, rollback_scope)
        };
        for (k, v) in &s.env {
            // (Placed at the value, on the name's line.)
            if !crate::step::run::is_env_name(k) {
                self.err(
                    &v.referenced,
                    format!(
                        "invalid environment variable name `{k}`: letters, digits and _, not starting with a digit"
                    ),
                );
            }
            self.plain_template(&v.value, &at, scope, &format!("env.{k}"));
        }
        let env: std::collections::BTreeMap<String, String> =
            std::mem::take(&mut s.env).into_iter().map(|(k, v)| (k, v.value)).collect();
        if let Some(when) = &s.when {
            let bare = when.value.trim();
            if bare.starts_with("{{") && bare.ends_with("}}") {
                let inner = bare.trim_start_matches("{{").trim_end_matches("}}").trim();
                self.err(
                    &when.referenced,
                    format!("when: an expression, not a template: drop the braces (`when: \"{inner}\"`)"),
                );
            } else {
                self.template(when, true, scope, "when");
            }
        }
        // (`retries.count` and `.backoff` are checked as they are read, at their values.)
        let kind_name = set[0];
        let mut validate = Vec::new();
        for v in s.validate {
            if let Some(c) = self.validation(v, kind_name, &id, scope) {
                validate.push(c);
            }
        }
        let shell = s.shell.unwrap_or_default();
        let rollback = s.rollback.and_then(|r| {
            let set: Vec<&str> = [
                r.run.is_some().then_some("run"),
                r.aws_lambda.is_some().then_some("aws_lambda"),
                r.aws_ssm_command.is_some().then_some("aws_ssm_command"),
                r.aws_ssm_automation.is_some().then_some("aws_ssm_automation"),
                r.manual.is_some().then_some("manual"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if set.len() != 1 {
                let one = "set exactly one of run, aws_lambda, aws_ssm_command, aws_ssm_automation, manual";
                let what =
                    if set.is_empty() { "does nothing".to_string() } else { format!("sets {}", set.join(" and ")) };
                self.err(&at, format!("step `{id}`: the rollback {what}: {one}"));
                return None;
            }
            let timeout = r.timeout.or(s.timeout);
            if let Some(m) = r.manual {
                if r.timeout.is_some() {
                    self.err(&at, format!("step `{id}`: a manual rollback sets its wait as rollback.manual.timeout"));
                }
                self.manual(&m, rollback_scope, "rollback.manual");
                return Some(Rollback::Manual(m));
            }
            if let Some(run) = r.run {
                self.script(&run, rollback_scope, "rollback.run");
                return Some(Rollback::Run(Script {
                    template: run.value,
                    shell,
                    env: env.clone(),
                    workdir: s.workdir.clone(),
                    timeout,
                }));
            }
            let kind = if let Some(l) = r.aws_lambda {
                self.lambda(l, rollback_scope, "rollback.aws_lambda")
            } else if let Some(c) = r.aws_ssm_command {
                self.ssm_command(c, rollback_scope, "rollback.aws_ssm_command")
            } else {
                self.ssm_automation(r.aws_ssm_automation?, rollback_scope, "rollback.aws_ssm_automation")
            };
            Some(Rollback::Aws { kind: Box::new(kind), timeout })
        });
        let kind = if let Some(run) = s.run {
            self.script(&run, scope, "run");
            StepKind::Run(Script { template: run.value, shell, env, workdir: s.workdir, timeout: s.timeout })
        } else if let Some(http) = s.http {
            self.template(&http.url, false, scope, "http.url");
            if let Some(body) = &http.body {
                self.plain_template(&body.value, &body.referenced, scope, "http.body");
            }
            if let Some(needle) = &http.expect_body_contains {
                self.plain_template(&needle.value, &needle.referenced, scope, "http.expect_body_contains");
            }
            for (k, v) in &http.headers {
                self.plain_template(&v.value, &v.referenced, scope, &format!("http.headers.{k}"));
            }
            for code in &http.expect_status {
                if !(100..=599).contains(code) {
                    self.err(&http.url.referenced, format!("http.expect_status: {code} is not an HTTP status code"));
                }
            }
            StepKind::Http(http)
        } else if let Some(l) = s.aws_lambda {
            self.lambda(l, scope, "aws_lambda")
        } else if let Some(c) = s.aws_ssm_command {
            self.ssm_command(c, scope, "aws_ssm_command")
        } else if let Some(a) = s.aws_ssm_automation {
            self.ssm_automation(a, scope, "aws_ssm_automation")
        } else if let Some(p) = s.parallel {
            let own = [
                s.timeout.is_some().then_some("timeout"),
                s.retries.is_some().then_some("retries"),
                (!validate.is_empty()).then_some("validate"),
                rollback.is_some().then_some("rollback"),
            ];
            let own: Vec<&str> = own.into_iter().flatten().collect();
            if !own.is_empty() {
                self.err(&at, format!("step `{id}`: {} belong on the branches of a parallel step", own.join(", ")));
            }
            self.parallel(p, &id, scope, rollback_scope)
        } else if let Some(c) = s.runbook {
            let own = [
                s.retries.is_some().then_some("retries"),
                (!validate.is_empty()).then_some("validate"),
                rollback.is_some().then_some("rollback"),
                s.targets.is_some().then_some("targets"),
            ];
            let own: Vec<&str> = own.into_iter().flatten().collect();
            if !own.is_empty() {
                self.err(
                    &at,
                    format!(
                        "step `{id}`: {} belong on the steps of the runbook it calls (a child that fails rolls itself back; \
                         a child that succeeded is rolled back as a whole when this runbook rolls back)",
                        own.join(", ")
                    ),
                );
            }
            self.call(c, &at, &id, scope)
        } else if let Some(d) = s.sleep {
            StepKind::Sleep(SleepSpec { duration: d })
        } else if let Some(m) = s.manual {
            if s.timeout.is_some() {
                self.err(&at, format!("step `{id}`: a manual step sets its wait as manual.timeout"));
            }
            if s.retries.is_some() {
                self.err(&at, format!("step `{id}`: retries do not apply to manual steps"));
            }
            self.manual(&m, scope, "manual");
            StepKind::Manual(m)
        } else if let Some(g) = s.gate {
            if let Err((place, e)) = g.check() {
                // At the value the message quotes, else at the source (or the step).
                let pos = place.as_ref().and_then(|p| crate::gate::quoted_place(self.source, p, &e));
                let pos = pos.or_else(|| Pos::from_location(place.as_ref().unwrap_or(&at)));
                self.diags.push(Diagnostic::new(pos, format!("step `{id}`: {e}")));
            }
            StepKind::Gate(g)
        } else {
            let a = s.approval.expect("exactly one kind is set");
            let mut users = BTreeSet::new();
            let mut has_role = false;
            for ap in &a.approvers {
                match Approver::parse(&ap.value) {
                    Ok(Approver::User(u)) => {
                        users.insert(u);
                    }
                    Ok(Approver::Role(_)) => has_role = true,
                    Err(e) => self.err(&ap.referenced, format!("approval.approvers: {e}")),
                }
            }
            if a.min_approvals == 0 {
                self.err(&at, format!("step `{id}`: approval.min_approvals must be at least 1"));
            } else if !has_role && !users.is_empty() && (a.min_approvals as usize) > users.len() {
                self.err(
                    &at,
                    format!(
                        "step `{id}`: approval.min_approvals is {} but only {} user(s) may approve",
                        a.min_approvals,
                        users.len()
                    ),
                );
            }
            if let Some(m) = &a.message {
                self.template(m, false, scope, "approval.message");
            }
            StepKind::Approval(a)
        };
        if self.diags.len() > n {
            return None;
        }
        let timeout = s.timeout.unwrap_or_else(|| kind.default_timeout());
        Some(Step {
            name: s.name.map_or_else(|| id.clone(), |n| n.value),
            id,
            description: s.description,
            kind,
            timeout,
            retries: s.retries,
            validate,
            rollback,
            required: s.required,
            when: s.when.map(|w| w.value),
            idempotent: s.idempotent,
            targets,
            line: u32::try_from(at.line()).unwrap_or(0),
            column: u32::try_from(at.column()).unwrap_or(0),
        })
    }
}

impl Checker<'_> {
    /// Checks a `parallel` step's branches: `run` steps with ids of their own.
    fn parallel(&mut self, p: RawParallel, id: &str, scope: &Scope<'_>, rollback_scope: &Scope<'_>) -> StepKind {
        if let Some(max) = p.max.as_ref().filter(|m| m.value == 0) {
            self.err(&max.referenced, format!("step `{id}`: parallel.max must be at least 1"));
        }
        if p.steps.value.is_empty() {
            self.err(&p.steps.referenced, format!("step `{id}`: parallel.steps: list the branches"));
        }
        let mut seen = BTreeSet::new();
        let mut branches = Vec::new();
        for raw in p.steps.value {
            let b = &raw.value;
            let where_ = raw.referenced;
            let bid = b.id.value.clone();
            // The branch's id belongs to its group's position, and to nothing else.
            if !seen.insert(bid.clone()) || scope.steps.get(&bid) != Some(&scope.visible_below) || bid == id {
                self.err(&b.id.referenced, format!("duplicate step id `{bid}`"));
            }
            let not_run = b.run.is_none();
            let extra = [
                b.targets.is_some().then_some("targets"),
                b.when.is_some().then_some("when"),
                b.parallel.is_some().then_some("parallel"),
            ];
            let extra: Vec<&str> = extra.into_iter().flatten().collect();
            let odd_rollback = b.rollback.as_ref().is_some_and(|r| r.run.is_none());
            if let Some(step) = self.step(raw, scope, rollback_scope) {
                if odd_rollback {
                    self.err(&where_, format!("branch `{bid}` of step `{id}`: a branch rolls back with `run`"));
                } else if not_run {
                    self.err(&where_, format!("branch `{bid}` of step `{id}`: a branch is a `run` step"));
                } else if !extra.is_empty() {
                    self.err(
                        &where_,
                        format!("branch `{bid}` of step `{id}`: {} cannot be set on a branch", extra.join(", ")),
                    );
                } else {
                    branches.push(step);
                }
            }
        }
        let max = p.max.map_or(branches.len(), |m| m.value as usize).max(1);
        StepKind::Parallel(ParallelSpec { max, fail: p.fail, branches })
    }

    /// Checks a `manual` action's templates (of a step or a rollback, as `field` says).
    fn manual(&mut self, m: &crate::step::manual::ManualSpec, scope: &Scope<'_>, field: &str) {
        if m.instructions.value.trim().is_empty() {
            self.err(&m.instructions.referenced, format!("{field}.instructions: say what to do"));
        }
        self.template(&m.instructions, false, scope, &format!("{field}.instructions"));
        for item in &m.checklist {
            if item.value.trim().is_empty() {
                self.err(&item.referenced, format!("{field}.checklist: an item is empty"));
            }
            self.template(item, false, scope, &format!("{field}.checklist"));
        }
    }

    /// Checks an `aws_lambda` action (of a step or a rollback, as `field` says).
    fn lambda(&mut self, l: LambdaSpec, scope: &Scope<'_>, field: &str) -> StepKind {
        self.template(&l.function, false, scope, &format!("{field}.function"));
        if let Some(payload) = &l.payload {
            for e in template::check_json(payload, scope, &format!("{field}.payload")) {
                self.err(&l.function.referenced, e);
            }
        }
        for (place, e) in aws::check_target(field, &l.region, &l.role_arn) {
            self.err(&place, e);
        }
        StepKind::AwsLambda(l)
    }

    /// Checks SSM parameters: strings or lists of strings, each a template.
    fn ssm_params(
        &mut self,
        params: &BTreeMap<String, serde_json::Value>,
        at: &Location,
        scope: &Scope<'_>,
        field: &str,
    ) {
        match aws::ssm_parameters(params) {
            Ok(lists) => {
                for (k, values) in lists {
                    for v in values {
                        self.plain_template(&v, at, scope, &format!("{field}.parameters.{k}"));
                    }
                }
            }
            Err(e) => self.err(at, format!("{field}.{e}")),
        }
    }

    fn ssm_command(&mut self, c: SsmCommandSpec, scope: &Scope<'_>, field: &str) -> StepKind {
        let at = c.document.referenced;
        self.template(&c.document, false, scope, &format!("{field}.document"));
        let t = &c.targets;
        match (t.instance_ids.is_empty(), t.tags.is_empty()) {
            (true, true) => self.err(&at, format!("{field}.targets: set instance_ids or tags")),
            (false, false) => self.err(&at, format!("{field}.targets: set instance_ids or tags, not both")),
            _ => {}
        }
        if t.instance_ids.len() > 50 {
            self.err(
                &at,
                format!("{field}.targets.instance_ids: {} ids, SSM takes at most 50 (use tags)", t.instance_ids.len()),
            );
        }
        for id in &t.instance_ids {
            self.plain_template(id, &at, scope, &format!("{field}.targets.instance_ids"));
        }
        if t.tags.len() > 5 {
            self.err(&at, format!("{field}.targets.tags: {} tags, SSM takes at most 5", t.tags.len()));
        }
        match aws::ssm_parameters(&t.tags) {
            Ok(tags) => {
                for (k, values) in tags {
                    for v in values {
                        self.plain_template(&v, &at, scope, &format!("{field}.targets.tags.{k}"));
                    }
                }
            }
            Err(e) => self.err(&at, format!("{field}.targets.tags.{}", e.strip_prefix("parameters.").unwrap_or(&e))),
        }
        self.ssm_params(&c.parameters, &at, scope, field);
        for (name, rate) in [("max_concurrency", &c.max_concurrency), ("max_errors", &c.max_errors)] {
            if let Some(r) = rate
                && let Err(e) = aws::check_rate(&format!("{field}.{name}"), &r.value)
            {
                self.err(&r.referenced, e);
            }
        }
        for (place, e) in aws::check_target(field, &c.region, &c.role_arn) {
            self.err(&place, e);
        }
        StepKind::AwsSsmCommand(Box::new(c))
    }

    fn ssm_automation(&mut self, a: SsmAutomationSpec, scope: &Scope<'_>, field: &str) -> StepKind {
        let at = a.document.referenced;
        self.template(&a.document, false, scope, &format!("{field}.document"));
        self.ssm_params(&a.parameters, &at, scope, field);
        for (place, e) in aws::check_target(field, &a.region, &a.role_arn) {
            self.err(&place, e);
        }
        StepKind::AwsSsmAutomation(a)
    }

    /// Checks one `validate` entry of a step of kind `kind`: one check per entry, and one
    /// that applies to the kind.
    fn validation(
        &mut self,
        v: Spanned<Validation>,
        kind: &str,
        id: &str,
        scope: &Scope<'_>,
    ) -> Option<CheckedValidation> {
        let at = v.referenced;
        let v = v.value;
        let set: Vec<&str> = [
            v.exit_code.is_some().then_some("exit_code"),
            v.output_contains.is_some().then_some("output_contains"),
            v.output_matches.is_some().then_some("output_matches"),
            v.json.is_some().then_some("json"),
            v.lambda.is_some().then_some("lambda"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let one = "each entry sets one of exit_code, output_contains, output_matches, json (with equals), lambda";
        match set.as_slice() {
            [] if v.equals.is_some() => {
                self.err(&at, "validate: `equals` goes with `json: PATH`, the value to compare")
            }
            [] => self.err(&at, format!("validate: {one}")),
            [_] => {}
            more => self.err(&at, format!("validate: this entry sets {}; {one}", more.join(" and "))),
        }
        if set.len() != 1 {
            return None;
        }
        let check = set[0];
        let applies = match check {
            "exit_code" | "output_contains" | "output_matches" => kind == "run",
            "json" => matches!(kind, "aws_lambda" | "http"),
            _ => !matches!(kind, "sleep" | "approval" | "manual" | "gate"),
        };
        if !applies {
            let which = match check {
                "json" => "aws_lambda and http steps",
                "lambda" => "steps that run something (not sleep, approval, manual or gate steps)",
                _ => "run steps",
            };
            self.err(&at, format!("step `{id}`: validate.{check} applies to {which}, not to {kind} steps"));
            return None;
        }
        if v.equals.is_some() && check != "json" {
            self.err(&at, format!("validate: `equals` goes with `json`, not with `{check}`"));
            return None;
        }
        Some(match v {
            Validation { exit_code: Some(c), .. } => {
                let codes = match &c {
                    crate::document::ExitCodes::One(c) => std::slice::from_ref(c),
                    crate::document::ExitCodes::Many(cs) => cs.as_slice(),
                };
                if let Some(bad) = codes.iter().find(|c| !(0..=255).contains(*c)) {
                    self.err(&at, format!("validate: exit_code {bad} can never match: exit codes are 0 to 255"));
                    return None;
                }
                CheckedValidation::ExitCode(c)
            }
            Validation { output_contains: Some(t), .. } => {
                self.plain_template(&t, &at, scope, "validate.output_contains");
                CheckedValidation::OutputContains(t)
            }
            Validation { output_matches: Some(re), .. } => {
                match regex::RegexBuilder::new(&re.value).multi_line(true).build() {
                    Ok(r) => CheckedValidation::OutputMatches(r),
                    Err(e) => {
                        let msg = e.to_string();
                        let last = msg.lines().last().unwrap_or_default().trim();
                        let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
                        self.err(&re.referenced, format!("output_matches: invalid regular expression: {last}"));
                        return None;
                    }
                }
            }
            Validation { json: Some(path), equals, .. } => {
                let Some(equals) = equals else {
                    self.err(&path.referenced, format!("validate: `json: {}` needs `equals: VALUE`", path.value));
                    return None;
                };
                match crate::jsonpath::JsonPath::parse(&path.value) {
                    Ok(p) => CheckedValidation::Json { path: p, equals },
                    Err(e) => {
                        self.err(&path.referenced, format!("validate.json: {e}"));
                        return None;
                    }
                }
            }
            Validation { lambda: Some(f), .. } => {
                if f.value.trim().is_empty() {
                    self.err(&f.referenced, "validate.lambda: name the function");
                    return None;
                }
                CheckedValidation::Lambda(f.value)
            }
            _ => return None,
        })
    }
}

fn is_step_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}
