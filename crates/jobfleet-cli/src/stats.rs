//! `jobfleet stats [queue] [--watch N]`: the queue table, refreshed live.

use std::collections::HashMap;
use std::time::Duration;

use jobfleet_producer::{Producer, QueueStats};

use crate::args::StatsArgs;
use crate::error::{CliError, CliErrorKind};
use crate::output::Output;
use crate::queue::stats_table;

async fn snapshot(producer: &Producer, queue: Option<&str>) -> Result<Vec<QueueStats>, CliError> {
    let js = producer.jetstream();
    let names = match queue {
        Some(q) => vec![q.to_owned()],
        None => jobfleet_producer::list_queues(js).await?,
    };
    let mut all = Vec::with_capacity(names.len());
    for name in names {
        all.push(jobfleet_producer::queue_stats(js, &name).await?);
    }
    Ok(all)
}

pub(crate) async fn run(
    args: StatsArgs,
    producer: &Producer,
    out: &Output,
) -> Result<(), CliError> {
    let Some(every) = args.watch else {
        let all = snapshot(producer, args.queue.as_deref()).await?;
        out.print(&all, || stats_table(&all));
        return Ok(());
    };
    let every_duration = Duration::try_from_secs_f64(every)
        .ok()
        .filter(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_secs(86_400))
        .ok_or_else(|| CliError::new(CliErrorKind::Usage, "--watch takes 0.2 to 86400 seconds"))?;
    let mut previous: HashMap<String, QueueStats> = HashMap::new();
    let mut tick = tokio::time::interval(every_duration);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let all = snapshot(producer, args.queue.as_deref()).await?;
        if out.is_json() {
            // One JSON document per refresh (JSON lines), for piping.
            println!("{}", serde_json::to_string(&all).unwrap_or_default());
        } else {
            let mut text = String::from("\x1b[2J\x1b[H");
            text.push_str(&stats_table(&all));
            text.push_str("\n\nRATE (per second)\n");
            for s in &all {
                if let Some(rates) = previous.get(&s.name).and_then(|p| s.rates_since(p)) {
                    text.push_str(&format!(
                        "{:<24} stored {:>8.1}  done {:>8.1}  dead {:>6.1}\n",
                        s.name, rates.stored_per_sec, rates.removed_per_sec, rates.dead_per_sec
                    ));
                }
            }
            text.push_str(&format!("\nrefreshing every {every}s; Ctrl-C to stop\n"));
            print!("{text}");
        }
        previous = all.into_iter().map(|s| (s.name.clone(), s)).collect();
    }
}
