//! `jobfleet dlq ls|show|redrive|purge`.

use base64::Engine as _;
use jobfleet_core::JobId;
use jobfleet_producer::Producer;
use jobfleet_worker::{DeadLetter, RedriveSelection};

use crate::args::DlqCommand;
use crate::error::{CliError, CliErrorKind};
use crate::output::{Output, table};

fn parse_ids(ids: &[String]) -> Result<Vec<JobId>, CliError> {
    ids.iter()
        .map(|id| {
            id.parse().map_err(|_| {
                CliError::new(
                    CliErrorKind::Usage,
                    format!("{id:?} is not a job id (a UUID)"),
                )
            })
        })
        .collect()
}

fn summary(dead: &DeadLetter) -> serde_json::Value {
    let meta = dead.meta.as_ref();
    serde_json::json!({
        "id": dead.id.to_string(),
        "sequence": dead.sequence,
        "reason": dead.reason,
        "attempts": dead.attempts,
        "dead_at": dead.dead_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        "type": meta.and_then(|m| m.job_type.clone()),
        "payload_size": dead.payload.len(),
    })
}

pub(crate) async fn run(
    command: DlqCommand,
    producer: &Producer,
    out: &Output,
) -> Result<(), CliError> {
    let js = producer.jetstream();
    match command {
        DlqCommand::Ls {
            queue,
            reason,
            job_type,
            limit,
        } => {
            let page = jobfleet_worker::dead_letters_page(js, &queue, 0, limit, |dead| {
                reason.as_deref().is_none_or(|r| dead.reason.contains(r))
                    && job_type.as_deref().is_none_or(|t| {
                        dead.meta.as_ref().and_then(|m| m.job_type.as_deref()) == Some(t)
                    })
            })
            .await?;
            let json: Vec<_> = page.iter().map(summary).collect();
            out.print(&json, || {
                if page.is_empty() {
                    return format!("no dead letters in {queue}");
                }
                let rows: Vec<Vec<String>> = json
                    .iter()
                    .map(|d| {
                        vec![
                            d["id"].as_str().unwrap_or_default().to_owned(),
                            d["type"].as_str().unwrap_or("-").to_owned(),
                            d["attempts"].to_string(),
                            d["dead_at"].as_str().unwrap_or("-").to_owned(),
                            d["reason"].as_str().unwrap_or_default().to_owned(),
                        ]
                    })
                    .collect();
                table(&["ID", "TYPE", "ATTEMPTS", "DEAD AT", "REASON"], &rows)
            });
            Ok(())
        }
        DlqCommand::Show { queue, id } => {
            let id = parse_ids(&[id])?[0];
            let dead = jobfleet_worker::dead_letter(js, &queue, id)
                .await?
                .ok_or_else(|| {
                    CliError::new(
                        CliErrorKind::NotFound,
                        format!("job {id} is not in the dead letters of {queue:?}"),
                    )
                })?;
            let mut json = summary(&dead);
            let payload = serde_json::from_slice::<serde_json::Value>(&dead.payload).ok();
            match &payload {
                Some(value) => json["payload"] = value.clone(),
                None => {
                    json["payload_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(&dead.payload)
                        .into();
                }
            }
            let headers: Vec<(String, String)> = dead
                .headers
                .iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_owned()))
                })
                .collect();
            json["headers"] = serde_json::json!(headers);
            out.print(&json, || {
                let mut text = format!(
                    "job       {}\nreason    {}\nattempts  {}\ndead at   {}\npayload   {}\nheaders\n",
                    dead.id,
                    dead.reason,
                    dead.attempts,
                    json["dead_at"].as_str().unwrap_or("-"),
                    match &payload {
                        Some(v) => v.to_string(),
                        None => format!("{} bytes (not JSON; --json shows base64)", dead.payload.len()),
                    }
                );
                for (name, value) in &headers {
                    text.push_str(&format!("  {name}: {value}\n"));
                }
                text
            });
            Ok(())
        }
        DlqCommand::Redrive {
            queue,
            ids,
            all,
            reason,
        } => {
            let selection = match (ids.is_empty(), all, reason) {
                (false, false, None) => RedriveSelection::Ids(parse_ids(&ids)?),
                (true, true, None) => RedriveSelection::All,
                (true, false, Some(reason)) if !reason.is_empty() => {
                    RedriveSelection::Matching(Box::new(move |dead: &DeadLetter| {
                        dead.reason.contains(&reason)
                    }))
                }
                _ => {
                    return Err(CliError::new(
                        CliErrorKind::Usage,
                        "choose exactly one of --id ID..., --all, --reason TEXT",
                    ));
                }
            };
            let wanted = match &selection {
                RedriveSelection::Ids(ids) => Some(ids.len()),
                _ => None,
            };
            let report = jobfleet_worker::redrive(js, &queue, selection).await?;
            let json = serde_json::json!({
                "redriven": report.redriven.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "failed": report.failed.iter().map(|(id, e)| serde_json::json!({"id": id.to_string(), "error": e})).collect::<Vec<_>>(),
            });
            out.print(&json, || {
                let mut text = format!("{}: {} redriven", queue, report.redriven.len());
                for (id, error) in &report.failed {
                    text.push_str(&format!("\n  {id} stays dead: {error}"));
                }
                text
            });
            if let Some(wanted) = wanted
                && report.redriven.len() + report.failed.len() < wanted
            {
                return Err(CliError::new(
                    CliErrorKind::NotFound,
                    format!(
                        "{} of the ids are not in the dead letters of {queue:?}",
                        wanted - report.redriven.len() - report.failed.len()
                    ),
                ));
            }
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(CliError::new(
                    CliErrorKind::Failed,
                    format!("{} dead letters could not be redriven", report.failed.len()),
                ))
            }
        }
        DlqCommand::Purge { queue, ids, yes } => {
            let wanted = ids.len();
            let selection = if !ids.is_empty() {
                RedriveSelection::Ids(parse_ids(&ids)?)
            } else if yes {
                RedriveSelection::All
            } else {
                return Err(CliError::new(
                    CliErrorKind::Usage,
                    format!("give --id ID... or --yes to delete every dead letter of {queue:?}"),
                ));
            };
            let deleted = jobfleet_worker::delete_dead_letters(js, &queue, selection).await?;
            let json = serde_json::json!({"deleted": deleted.iter().map(ToString::to_string).collect::<Vec<_>>()});
            out.print(&json, || {
                format!("{queue}: {} dead letters deleted", deleted.len())
            });
            if wanted > deleted.len() {
                return Err(CliError::new(
                    CliErrorKind::NotFound,
                    format!(
                        "{} of the ids are not in the dead letters of {queue:?}",
                        wanted - deleted.len()
                    ),
                ));
            }
            Ok(())
        }
    }
}
