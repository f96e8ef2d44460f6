//! `ls`, `stat`, `rm` and `grant`: thin commands over the artifact API.
//! `ls` pages through `next_cursor` until the listing ends or `--limit` is met.

use serde_json::{Value, json};

use super::api::Api;
use super::output::{list_line, print_json, print_stdout, stat_text};
use super::{Result, parse_artifact_ref};
use crate::cli::{GrantArgs, LsArgs, TargetArgs};

/// Runs `ls`.
pub async fn ls(api: Api, args: &LsArgs) -> Result<()> {
    let mut cursor: Option<String> = None;
    let mut all: Vec<Value> = Vec::new();
    let mut shown = 0u64;
    let want = args.limit.unwrap_or(u64::MAX);
    while shown < want {
        let page_size = (want - shown).min(u64::from(args.page_size)) as u32;
        let page = api
            .list(
                page_size,
                cursor.as_deref(),
                args.created_by.as_deref(),
                &args.labels,
            )
            .await?;
        for a in page.artifacts.into_iter().take((want - shown) as usize) {
            shown += 1;
            if args.client.json {
                all.push(a.raw);
            } else {
                print_stdout(&list_line(&a))?;
            }
        }
        match page.next_cursor {
            Some(c) if !c.is_empty() => cursor = Some(c),
            _ => break,
        }
    }
    if args.client.json {
        print_json(&json!({ "artifacts": all }))?;
    }
    Ok(())
}

/// Runs `stat`.
pub async fn stat(api: Api, args: &TargetArgs) -> Result<()> {
    let id = super::resolve_target(&api, &args.target).await?;
    let a = api.meta(&id).await?;
    if args.client.json {
        print_json(&a.raw)
    } else {
        print_stdout(&stat_text(&a))
    }
}

/// Runs `rm`.
pub async fn rm(api: Api, args: &TargetArgs) -> Result<()> {
    let id = parse_artifact_ref(&args.target)?;
    api.delete(&id).await?;
    if args.client.json {
        print_json(&json!({ "id": id, "deleted": true }))
    } else {
        eprintln!("deleted eden://artifacts/{id}");
        Ok(())
    }
}

/// Runs `grant` (or `grant --revoke`).
pub async fn grant(api: Api, args: &GrantArgs) -> Result<()> {
    let id = parse_artifact_ref(&args.target)?;
    let a = if args.revoke {
        api.revoke(&id, &args.principal).await?
    } else {
        api.grant(&id, &args.principal).await?
    };
    if args.client.json {
        return print_json(&a.raw);
    }
    print_stdout(&format!(
        "{} grants: {}\n",
        a.uri,
        if a.grants.is_empty() {
            "-".to_string()
        } else {
            a.grants.join(" ")
        }
    ))
}
