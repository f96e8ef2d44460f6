//! `eden-cas ref set|get|ls|rm|log`: named references over `/cas/v1/`
//! (`docs/client.md`). Every set is a compare-and-swap: `--create` is
//! create-only, `--if-match` names the expected target, and a plain `set`
//! reads the current target first and swaps from it, so a concurrent
//! change is never overwritten silently (the server answers 412, exit 2).

use serde_json::{Value, json};

use super::api::Api;
use super::local::display_safe;
use super::output::{print_json, print_stdout};
use super::{ClientError, Result, connect, parse_artifact_ref, resolve_target};
use crate::api::v1::SetRefRequest;
use crate::cli::{RefCommand, RefLsArgs, RefNameArgs, RefRmArgs, RefSetArgs};

/// Listing page size.
const PAGE: u32 = 1000;

/// Runs one `ref` subcommand.
pub async fn run(command: RefCommand) -> Result<()> {
    match command {
        RefCommand::Set(a) => set(connect(&a.client)?, &a).await,
        RefCommand::Get(a) => get(connect(&a.client)?, &a).await,
        RefCommand::Ls(a) => ls(connect(&a.client)?, &a).await,
        RefCommand::Rm(a) => rm(connect(&a.client)?, &a).await,
        RefCommand::Log(a) => log(connect(&a.client)?, &a).await,
    }
}

/// One line per reference: `name  target  updated_at  updated_by`.
fn line(r: &Value) -> String {
    let s = |k: &str| display_safe(r[k].as_str().unwrap_or("-"));
    format!(
        "{}\t{}\t{}\t{}",
        s("name"),
        s("target"),
        s("updated_at"),
        s("updated_by")
    )
}

async fn set(api: Api, a: &RefSetArgs) -> Result<()> {
    let target = resolve_target(&api, &a.target).await?;
    let condition = if a.create {
        ("If-None-Match", "*".to_string())
    } else if let Some(id) = &a.if_match {
        ("If-Match", format!("\"{}\"", parse_artifact_ref(id)?))
    } else {
        match api.get_ref(&a.name).await {
            Ok(r) => {
                let now = r["target"].as_str().unwrap_or_default();
                ("If-Match", format!("\"{now}\""))
            }
            Err(e) if e.is_status(404) => ("If-None-Match", "*".to_string()),
            Err(e) => return Err(e),
        }
    };
    let body = SetRefRequest {
        expires_in: a.expires_in.clone(),
        grants: (!a.grants.is_empty()).then(|| a.grants.clone()),
        target,
    };
    let r = api.set_ref(&a.name, &body, condition).await?;
    if a.client.json {
        print_json(&r)
    } else {
        print_stdout(&line(&r))
    }
}

async fn get(api: Api, a: &RefNameArgs) -> Result<()> {
    let r = api.get_ref(&a.name).await?;
    if a.client.json {
        print_json(&r)
    } else {
        print_stdout(&line(&r))
    }
}

async fn ls(api: Api, a: &RefLsArgs) -> Result<()> {
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let page = api.list_refs(&a.prefix, cursor.as_deref(), PAGE).await?;
        let refs = page["refs"]
            .as_array()
            .ok_or_else(|| ClientError::Protocol("a listing without refs".into()))?;
        for r in refs {
            if a.client.json {
                all.push(r.clone());
            } else {
                print_stdout(&line(r))?;
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
            _ => break,
        }
    }
    if a.client.json {
        print_json(&json!({ "refs": all }))?;
    }
    Ok(())
}

async fn rm(api: Api, a: &RefRmArgs) -> Result<()> {
    let expected = a.if_match.as_deref().map(parse_artifact_ref).transpose()?;
    api.delete_ref(&a.name, expected.as_deref()).await?;
    if a.client.json {
        print_json(&json!({ "name": a.name, "deleted": true }))
    } else {
        eprintln!("deleted reference {}", display_safe(&a.name));
        Ok(())
    }
}

async fn log(api: Api, a: &RefNameArgs) -> Result<()> {
    let h = api.ref_history(&a.name).await?;
    if a.client.json {
        return print_json(&h);
    }
    for c in h["changes"].as_array().into_iter().flatten() {
        let s = |k: &str| display_safe(c[k].as_str().unwrap_or("-"));
        print_stdout(&format!(
            "{}\t{}\t{}\t{} -> {}",
            c["seq"],
            s("at"),
            s("by"),
            s("from"),
            s("to")
        ))?;
    }
    Ok(())
}
