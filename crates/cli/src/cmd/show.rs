//! `opsbook show ID`: one execution with its steps.

use anyhow::Result;

use super::EXIT_OK;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix of at least 4 characters)
    pub id: String,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let engine = super::open(db).await?;
    let doc = super::logs::doc(&engine.store, &args.id).await?;
    if args.output == crate::Output::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(EXIT_OK);
    }
    crate::view::print_header(&doc);
    super::run::print_summary(&engine, &doc).await;
    Ok(EXIT_OK)
}
