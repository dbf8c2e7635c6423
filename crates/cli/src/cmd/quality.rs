//! `opsbook feedback ID --rating N` (here, or on the server) and `opsbook review NAME
//! --note TEXT` (on the server: reviews belong to its registry).

use anyhow::Result;

use super::{EXIT_OK, usage};
use crate::Output;
use crate::client::{Client, enc};

#[derive(clap::Args, Debug)]
pub struct FeedbackArgs {
    /// Execution id (or a unique prefix); it must have ended
    pub id: String,
    /// 1 (poor) to 5 (great)
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub rating: u8,
    /// What went well or badly
    #[arg(short, long)]
    pub comment: Option<String>,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    /// The runbook's name in the registry
    pub name: String,
    /// What the review checked, found or changed
    #[arg(short, long)]
    pub note: String,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub async fn feedback(db: Option<opsbook_store::DatabaseUrl>, args: FeedbackArgs) -> Result<u8> {
    let engine = super::open(db).await?;
    let f = engine.rate(&args.id, &super::os_user(), args.rating, args.comment).await?;
    print_feedback(&opsbook_api::FeedbackDoc::from(&f), args.output)
}

pub async fn feedback_remote(client: &Client, args: &FeedbackArgs) -> Result<u8> {
    let body = opsbook_api::FeedbackIn { rating: args.rating, comment: args.comment.clone() };
    let doc: opsbook_api::FeedbackDoc =
        client.post(&format!("/api/v1/executions/{}/feedback", enc(&args.id)), &body).await?;
    print_feedback(&doc, args.output)
}

fn print_feedback(doc: &opsbook_api::FeedbackDoc, output: Output) -> Result<u8> {
    match output {
        Output::Json => say!("{}", serde_json::to_string_pretty(doc)?),
        Output::Text => say!("{} rated execution {} {}/5", doc.user, doc.execution, doc.rating),
    }
    Ok(EXIT_OK)
}

pub async fn review(client: &Client, args: &ReviewArgs) -> Result<u8> {
    if args.note.trim().is_empty() {
        return Err(usage("--note: say what the review checked or found"));
    }
    let body = opsbook_api::ReviewIn { note: args.note.clone() };
    let doc: opsbook_api::ReviewDoc =
        client.post(&format!("/api/v1/runbooks/{}/reviews", enc(&args.name)), &body).await?;
    match args.output {
        Output::Json => say!("{}", serde_json::to_string_pretty(&doc)?),
        Output::Text => {
            let next = doc.next_due.as_deref().map(|d| format!("; next review due {d}")).unwrap_or_default();
            say!("{} reviewed {} v{}{next}", doc.reviewer, doc.name, doc.version);
        }
    }
    Ok(EXIT_OK)
}
