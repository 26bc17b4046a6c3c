//! `jobfleet queue ...`.

use jobfleet_producer::{Producer, QueueFile, QueueStats};

use crate::args::QueueCommand;
use crate::error::{CliError, CliErrorKind};
use crate::output::{Output, short_duration, table};

pub(crate) async fn run(
    command: QueueCommand,
    producer: &Producer,
    out: &Output,
) -> Result<(), CliError> {
    let js = producer.jetstream();
    match command {
        QueueCommand::Declare { file } => {
            let text = std::fs::read_to_string(&file).map_err(|err| {
                CliError::new(
                    CliErrorKind::Usage,
                    format!("cannot read {}: {err}", file.display()),
                )
            })?;
            let queues = QueueFile::from_toml(&text).map_err(|err| {
                CliError::new(CliErrorKind::Usage, format!("{}: {err}", file.display()))
            })?;
            let declared = producer.declare_queues(&queues).await?;
            let rows: Vec<serde_json::Value> = declared
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "queue": d.queue,
                        "created": d.created,
                        "changed": d.changed,
                        "not_applied": d.not_applied.iter().map(|n| serde_json::json!({
                            "field": n.field, "current": n.current, "wanted": n.wanted, "reason": n.reason,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            out.print(&rows, || {
                let mut text = String::new();
                for d in &declared {
                    let what = if d.created {
                        "created".to_owned()
                    } else if d.changed.is_empty() {
                        "unchanged".to_owned()
                    } else {
                        format!("updated ({})", d.changed.join(", "))
                    };
                    text.push_str(&format!("{}: {what}\n", d.queue));
                    for n in &d.not_applied {
                        text.push_str(&format!(
                            "  not applied: {} is {}, declared {} ({})\n",
                            n.field, n.current, n.wanted, n.reason
                        ));
                    }
                }
                text
            });
            Ok(())
        }
        QueueCommand::Ls => {
            let mut all = Vec::new();
            for name in jobfleet_producer::list_queues(js).await? {
                all.push(jobfleet_producer::queue_stats(js, &name).await?);
            }
            out.print(&all, || stats_table(&all));
            Ok(())
        }
        QueueCommand::Info { queue } => {
            let stats = jobfleet_producer::queue_stats(js, &queue).await?;
            out.print(&stats, || info_text(&stats));
            Ok(())
        }
        QueueCommand::Pause { queue } => {
            let paused = jobfleet_producer::pause_queue(js, &queue, None).await?;
            out.print(
                &serde_json::json!({"queue": queue, "paused": paused}),
                || {
                    format!(
                        "{queue}: paused (enqueueing goes on; workers get no jobs until resumed)"
                    )
                },
            );
            Ok(())
        }
        QueueCommand::Resume { queue } => {
            let paused = jobfleet_producer::resume_queue(js, &queue).await?;
            out.print(
                &serde_json::json!({"queue": queue, "paused": paused}),
                || format!("{queue}: resumed"),
            );
            Ok(())
        }
        QueueCommand::Purge { queue, yes } => {
            if !yes {
                return Err(CliError::new(
                    CliErrorKind::Usage,
                    format!("purging deletes every waiting job of {queue:?}: add --yes to confirm"),
                ));
            }
            let purged = jobfleet_producer::purge_queue(js, &queue).await?;
            out.print(
                &serde_json::json!({"queue": queue, "purged": purged}),
                || format!("{queue}: {purged} jobs deleted"),
            );
            Ok(())
        }
    }
}

/// The queue table shared by `queue ls` and `stats`.
pub(crate) fn stats_table(all: &[QueueStats]) -> String {
    if all.is_empty() {
        return "no queues (declare one with `jobfleet queue declare --file queues.toml`)"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.ready.to_string(),
                s.in_flight.to_string(),
                s.scheduled.to_string(),
                s.dead.to_string(),
                s.oldest_ready_age
                    .map(short_duration)
                    .unwrap_or_else(|| "-".to_owned()),
                if s.paused { "paused" } else { "active" }.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "READY",
            "IN FLIGHT",
            "SCHEDULED",
            "DEAD",
            "OLDEST",
            "STATE",
        ],
        &rows,
    )
}

fn info_text(s: &QueueStats) -> String {
    let mut text = format!(
        "queue        {}\nstate        {}\nready        {}\nin flight    {} (fleet cap {})\nscheduled    {}\ndead         {}\noldest ready {}\nidle pulls   {}\nstored       {} total, {} bytes now\nreplicas     {} ({})\nlease        {}\n",
        s.name,
        if s.paused { "paused" } else { "active" },
        s.ready,
        s.in_flight,
        s.max_in_flight,
        s.scheduled,
        s.dead,
        s.oldest_ready_age
            .map(short_duration)
            .unwrap_or_else(|| "-".to_owned()),
        s.waiting_pulls,
        s.stored_total,
        s.bytes,
        s.replicas,
        s.storage,
        short_duration(s.ack_wait),
    );
    if let Some(max) = s.max_jobs {
        text.push_str(&format!("max jobs     {max}\n"));
    }
    if let Some(w) = &s.worker {
        text.push_str(&format!(
            "attempts     {}\ntimeout      {}\n",
            w.max_attempts,
            short_duration(w.timeout)
        ));
    }
    if let Some(d) = &s.description {
        text.push_str(&format!("description  {d}\n"));
    }
    text
}
