//! Fault scenarios on one nats-server: worker SIGKILL and SIGTERM loops, poison jobs with a
//! crash between dead-lettering and terminating, handler crash modes, hung handlers, a NATS
//! restart, and backpressure through the gateway.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_core::{AuditEventKind, JobId};
use jobfleet_testkit::NatsServer;

use crate::checker::check;
use crate::harness::{
    ACK_WAIT, Fleet, OnRefusal, Recovery, Row, SETTLE, SharedLedger, WorkerSpec, fault_queue, plan,
    produce, produce_http, read_executions, recovery, unix_ms, wait_drained,
};
use crate::harness::{Scene, snapshot};

/// A small deterministic generator for picking victims (seeded per scenario, printed).
pub(crate) struct Dice(u64);

impl Dice {
    pub(crate) fn new(name: &str) -> Self {
        let seed = u64::try_from(unix_ms() % 1_000_000).unwrap_or(1) ^ name.len() as u64;
        eprintln!("  [{name}] victim seed {seed}");
        Self(seed | 1)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).expect("small")
    }
}

/// The Python fault app's worker (supervised, so a recycle restarts it in place).
pub(crate) fn python_worker(
    urls: &str,
    log: &Path,
    sync_queue: &str,
    async_queue: &str,
) -> WorkerSpec {
    let app_dir: PathBuf = jobfleet_tests::repo_root().join("tests/fault");
    WorkerSpec {
        program: jobfleet_tests::python(),
        args: [
            "-m",
            "jobfleet",
            "worker",
            "fault_app:app",
            "--nats-url",
            urls,
            "--no-declare",
            "--concurrency",
            "8",
            "--recycle-after",
            "1",
            // Short, so a worker orphaned by a failed scenario (its supervisor SIGKILLed by
            // `Fleet`'s drop) ends soon after the SIGTERM it gets from its parent's death.
            "--grace-seconds",
            "5",
            "--log-level",
            "warning",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        env: vec![
            ("PYTHONPATH".into(), app_dir.display().to_string()),
            ("FAULT_EXEC_LOG".into(), log.display().to_string()),
            ("FAULT_SYNC_QUEUE".into(), sync_queue.into()),
            ("FAULT_ASYNC_QUEUE".into(), async_queue.into()),
            ("RUST_LOG".into(), "error".into()),
        ],
    }
}

/// Keeps restarting workers that exited until `done` resolves; returns how many were.
async fn supervise_until(fleet: &mut Fleet, done: impl std::future::Future<Output = ()>) -> usize {
    tokio::pin!(done);
    let mut restarted = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = &mut done => return restarted,
            _ = tick.tick() => restarted += fleet.restart_exited(),
        }
    }
}

/// 1. SIGKILL a random worker every 1.5 ack waits under load, restarting it at once.
pub(crate) async fn worker_sigkill_loop() -> Row {
    let server = NatsServer::start();
    let url = server.url();
    let scene = Scene::new(&url, &[fault_queue("kill", 10)]).await;
    let mut fleet = Fleet::start(scene.rust_workers(3, "kill", &["--sleep-ms", "20"]));
    let ledger = SharedLedger::default();
    let load = scene.load("kill", plan(3000, &[]), 300.0, &ledger);
    let mut dice = Dice::new("sigkill");
    let mut faults = Vec::new();
    // At least 4 faults, and for as long as the load runs.
    while !load.is_finished() || faults.len() < 4 {
        tokio::time::sleep(ACK_WAIT * 3 / 2).await;
        fleet.kill_and_restart(dice.below(fleet.len()));
        faults.push(unix_ms());
    }
    load.await.expect("the load");
    let verdict = scene.verdict("kill", &ledger).await;
    fleet.stop(Duration::from_secs(10));
    verdict.assert_sound("worker SIGKILL loop");
    assert!(faults.len() >= 4, "only {} kills", faults.len());
    assert_eq!(verdict.succeeded, verdict.accepted, "every job succeeds");
    let executions = read_executions(&scene.log);
    let processes = executions
        .iter()
        .map(|e| e.pid)
        .collect::<HashSet<_>>()
        .len();
    let recover = recovery(&faults, &executions, &[]);
    Row::from_verdict(
        &verdict,
        faults.len(),
        recover,
        format!("3 workers, SIGKILL every 1.5 ack waits; jobs ran in {processes} processes"),
    )
}

/// 2. SIGTERM a random worker every 1.5 ack waits under load: no job may run twice.
pub(crate) async fn worker_sigterm_loop() -> Row {
    let server = NatsServer::start();
    let url = server.url();
    let scene = Scene::new(&url, &[fault_queue("term", 10)]).await;
    let mut fleet = Fleet::start(scene.rust_workers(3, "term", &["--sleep-ms", "20"]));
    let ledger = SharedLedger::default();
    let load = scene.load("term", plan(3000, &[]), 300.0, &ledger);
    let mut dice = Dice::new("sigterm");
    let mut faults = Vec::new();
    let mut longest_exit = Duration::ZERO;
    // At least 4 faults, and for as long as the load runs.
    while !load.is_finished() || faults.len() < 4 {
        tokio::time::sleep(ACK_WAIT * 3 / 2).await;
        let victim = dice.below(fleet.len());
        faults.push(unix_ms());
        let took = tokio::task::block_in_place(|| {
            fleet.terminate_and_restart(victim, Duration::from_secs(40))
        });
        longest_exit = longest_exit.max(took);
    }
    load.await.expect("the load");
    let verdict = scene.verdict("term", &ledger).await;
    fleet.stop(Duration::from_secs(10));
    verdict.assert_sound("worker SIGTERM loop");
    assert!(faults.len() >= 4, "only {} stops", faults.len());
    assert_eq!(
        verdict.duplicates, 0,
        "a graceful stop runs no job twice ({} executions for {} jobs)",
        verdict.executions, verdict.accepted
    );
    assert_eq!(
        verdict.executions, verdict.accepted,
        "one execution per job"
    );
    let recover = recovery(&faults, &read_executions(&scene.log), &[]);
    Row::from_verdict(
        &verdict,
        faults.len(),
        recover,
        format!(
            "SIGTERM every 1.5 ack waits; slowest graceful exit {} ms",
            longest_exit.as_millis()
        ),
    )
}

/// 3. Poison jobs among good ones; workers crash right after storing a dead-letter copy
///    (before the terminal event and the terminate), and one in 50 good jobs crashes its
///    worker after its terminal event (before the ack).
pub(crate) async fn poison_with_crashes() -> Row {
    let server = NatsServer::start();
    let url = server.url();
    let scene = Scene::new(&url, &[fault_queue("poison", 3)]).await;
    let mut specs = scene.rust_workers(2, "poison", &["--crash-at", "dead-letter-stored"]);
    specs.extend(scene.rust_workers(
        1,
        "poison",
        &["--crash-at", "terminal-stored", "--crash-one-in", "50"],
    ));
    let mut fleet = Fleet::start(specs);
    let ledger = SharedLedger::default();
    let load = produce(
        scene.producer.clone(),
        "poison".into(),
        plan(1500, &[("poison", 15)]),
        300.0,
        Arc::clone(&ledger),
        Duration::from_secs(60),
    );
    let js = scene.js().clone();
    let restarts = supervise_until(&mut fleet, async {
        load.await;
        wait_drained(&js, "poison", SETTLE).await;
    })
    .await;
    let verdict = scene.verdict("poison", &ledger).await;
    fleet.stop(Duration::from_secs(10));
    verdict.assert_sound("poison jobs with crashes");
    let crashed_at = |code| fleet.exits.iter().filter(|c| **c == Some(code)).count();
    let (after_copy, after_event) = (crashed_at(87), crashed_at(88));
    assert!(
        after_copy >= 1,
        "no worker crashed after storing a dead-letter copy"
    );
    assert!(
        after_event >= 1,
        "no worker crashed after storing a terminal event"
    );
    let crashes = after_copy + after_event;
    let ledger = ledger.lock().expect("ledger");
    let poison: HashSet<JobId> = ledger.of_kind("poison").into_iter().collect();
    for id in &poison {
        assert_eq!(
            verdict.dead_letter_entries.get(id).copied().unwrap_or(0),
            1,
            "poison job {id} has exactly one dead-letter entry"
        );
    }
    for (id, n) in &verdict.dead_letter_entries {
        assert!(
            poison.contains(id),
            "good job {id} was dead-lettered ({n}x)"
        );
    }
    assert_eq!(verdict.dead_lettered, poison.len());
    assert_eq!(verdict.succeeded, verdict.accepted - poison.len());
    let recover = Recovery::default();
    Row::from_verdict(
        &verdict,
        crashes,
        recover,
        format!(
            "{} poison; crashes: {after_copy} after a DLQ copy, {after_event} after a terminal event; {restarts} restarts; 1 DLQ entry each",
            poison.len()
        ),
    )
}

/// 4. Handler crash modes: a Rust panic, a Python exception, and a process exit inside a
///    handler (Rust and Python), among good jobs.
pub(crate) async fn handler_crash_modes() -> Row {
    let server = NatsServer::start();
    let url = server.url();
    let scene = Scene::new(
        &url,
        &[
            fault_queue("crash-rs", 3),
            fault_queue("crash-py", 3),
            fault_queue("crash-pya", 3),
        ],
    )
    .await;
    let mut specs = scene.rust_workers(2, "crash-rs", &[]);
    specs.push(python_worker(
        &scene.urls,
        &scene.log,
        "crash-py",
        "crash-pya",
    ));
    let mut fleet = Fleet::start(specs);
    let rust_ledger = SharedLedger::default();
    let py_ledger = SharedLedger::default();
    let rust_load = produce(
        scene.producer.clone(),
        "crash-rs".into(),
        plan(600, &[("panic", 10), ("exit-once", 8)]),
        200.0,
        Arc::clone(&rust_ledger),
        Duration::from_secs(60),
    );
    let py_load = produce(
        scene.producer.clone(),
        "crash-py".into(),
        plan(300, &[("raise", 10), ("exit-once", 4)]),
        100.0,
        Arc::clone(&py_ledger),
        Duration::from_secs(60),
    );
    let js = scene.js().clone();
    let restarts = supervise_until(&mut fleet, async {
        tokio::join!(rust_load, py_load);
        wait_drained(&js, "crash-rs", SETTLE).await;
        wait_drained(&js, "crash-py", SETTLE).await;
    })
    .await;
    let rust = scene.verdict("crash-rs", &rust_ledger).await;
    let python = scene.verdict("crash-py", &py_ledger).await;
    fleet.stop(Duration::from_secs(10));
    rust.assert_sound("crash modes (Rust)");
    python.assert_sound("crash modes (Python)");
    let exits = fleet.exits.iter().filter(|c| **c == Some(86)).count();
    assert!(exits >= 1, "no worker exited inside a handler");
    for (verdict, ledger, failing) in [
        (&rust, &rust_ledger, "panic"),
        (&python, &py_ledger, "raise"),
    ] {
        let ledger = ledger.lock().expect("ledger");
        for id in ledger.of_kind(failing) {
            let events = &verdict.events[&id];
            let last = events
                .iter()
                .rfind(|e| e.event.is_terminal())
                .expect("terminal");
            assert_eq!(
                last.event,
                AuditEventKind::DeadLettered,
                "{failing} job {id}"
            );
            // 3, or more when a crash of its worker cut an attempt short (a delivery past
            // max_attempts is dead-lettered without running).
            assert!(last.attempt >= 3, "{failing} job {id} used its 3 attempts");
            assert!(
                last.error.as_deref().is_some_and(|e| !e.is_empty()),
                "{failing} job {id} records why"
            );
        }
        for id in ledger.of_kind("exit-once") {
            let last = verdict.events[&id]
                .iter()
                .rfind(|e| e.event.is_terminal())
                .expect("terminal");
            assert_eq!(last.event, AuditEventKind::Succeeded, "exit-once job {id}");
        }
        assert_eq!(
            verdict.dead_lettered,
            ledger.of_kind(failing).len(),
            "only the {failing} jobs are dead-lettered"
        );
    }
    let row = Row::from_verdict(&rust, 0, Recovery::default(), "");
    let mut row = row.merge(&Row::from_verdict(&python, 0, Recovery::default(), ""));
    row.faults = exits;
    row.notes = format!(
        "panic x10 + exit x8 (Rust), raise x10 + os._exit x4 (Python); {restarts} restarts"
    );
    row
}

/// 5. Hung handlers (Rust async, Python def and async def) are cut off by their timeout and
///    retried, while the other jobs of the same workers keep flowing.
pub(crate) async fn hung_handlers() -> Row {
    let server = NatsServer::start();
    let url = server.url();
    let hang = |name: &str| {
        let mut queue = fault_queue(name, 3);
        queue.worker.timeout = ACK_WAIT;
        queue
    };
    let scene = Scene::new(&url, &[hang("hang-rs"), hang("hang-py"), hang("hang-pya")]).await;
    let mut specs = scene.rust_workers(1, "hang-rs", &["--concurrency", "8"]);
    specs.push(python_worker(
        &scene.urls,
        &scene.log,
        "hang-py",
        "hang-pya",
    ));
    let mut fleet = Fleet::start(specs);
    let ledgers: Vec<(&str, SharedLedger)> = ["hang-rs", "hang-py", "hang-pya"]
        .into_iter()
        .map(|q| (q, SharedLedger::default()))
        .collect();
    let loads = futures::future::join_all(ledgers.iter().map(|(queue, ledger)| {
        produce(
            scene.producer.clone(),
            (*queue).into(),
            plan(300, &[("hang-once", 3)]),
            60.0,
            Arc::clone(ledger),
            Duration::from_secs(60),
        )
    }));
    let js = scene.js().clone();
    let restarts = supervise_until(&mut fleet, async {
        loads.await;
        for (queue, _) in &ledgers {
            wait_drained(&js, queue, SETTLE).await;
        }
    })
    .await;
    let executions = read_executions(&scene.log);
    let mut row: Option<Row> = None;
    let mut cut_off = 0;
    for (queue, ledger) in &ledgers {
        let verdict = scene.verdict(queue, ledger).await;
        verdict.assert_sound(&format!("hung handlers ({queue})"));
        assert_eq!(
            verdict.succeeded, verdict.accepted,
            "{queue}: every job succeeds"
        );
        let ledger = ledger.lock().expect("ledger");
        let goods: HashSet<JobId> = ledger.of_kind("good").into_iter().collect();
        for id in ledger.of_kind("hang-once") {
            let hung = executions
                .iter()
                .find(|e| e.id == id && e.attempt == 1)
                .expect("the hung attempt ran");
            let retried = verdict.events[&id]
                .iter()
                .find(|e| e.event == AuditEventKind::Retried && e.attempt == 1)
                .unwrap_or_else(|| panic!("{queue}: hung job {id} was retried after its timeout"));
            assert!(
                retried
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("timed out") || e.contains("timeout")),
                "{queue}: hung job {id} failed by timeout, not {:?}",
                retried.error
            );
            let until = hung.at_ms + ACK_WAIT.as_millis();
            let flowing = executions
                .iter()
                .filter(|e| goods.contains(&e.id) && e.at_ms > hung.at_ms && e.at_ms < until)
                .count();
            assert!(flowing > 0, "{queue}: no other job ran while job {id} hung");
            cut_off += 1;
        }
        let this = Row::from_verdict(&verdict, 0, Recovery::default(), "");
        row = Some(match row {
            None => this,
            Some(row) => row.merge(&this),
        });
    }
    fleet.stop(Duration::from_secs(10));
    let mut row = row.expect("three queues");
    row.faults = cut_off;
    row.notes = format!(
        "timeout = 1 ack wait; Rust async, Python def + async def hang once each x3; {restarts} restarts"
    );
    row
}

/// 6. The single nats-server is SIGKILLed and restarted, then stopped and restarted
///    gracefully, under load.
pub(crate) async fn nats_restart() -> Row {
    let mut server = NatsServer::start();
    let url = server.url();
    let scene = Scene::new(&url, &[fault_queue("restart", 10)]).await;
    let mut fleet = Fleet::start(scene.rust_workers(2, "restart", &["--sleep-ms", "20"]));
    let ledger = SharedLedger::default();
    let load = scene.load("restart", plan(3000, &[]), 300.0, &ledger);
    let mut faults = Vec::new();
    tokio::time::sleep(ACK_WAIT * 2).await;
    faults.push(unix_ms());
    ledger
        .lock()
        .expect("ledger")
        .server_crashes
        .push(unix_ms());
    let down = std::time::Instant::now();
    tokio::task::block_in_place(|| {
        server.kill();
        server.restart();
    });
    let back_after_kill = down.elapsed();
    tokio::time::sleep(ACK_WAIT * 2).await;
    faults.push(unix_ms());
    let down = std::time::Instant::now();
    tokio::task::block_in_place(|| server.restart());
    let back_after_stop = down.elapsed();
    load.await.expect("the load");
    let verdict = scene.verdict("restart", &ledger).await;
    let restarted_workers = fleet.restart_exited();
    fleet.stop(Duration::from_secs(10));
    verdict.assert_sound("NATS restart");
    assert_eq!(restarted_workers, 0, "no worker died with the server");
    assert_eq!(verdict.succeeded, verdict.accepted, "every job succeeds");
    let ledger = ledger.lock().expect("ledger");
    let recover = recovery(&faults, &read_executions(&scene.log), &ledger.accepted_at);
    Row::from_verdict(
        &verdict,
        faults.len(),
        recover,
        format!(
            "SIGKILL + restart (healthy after {:.1} s), then graceful restart ({:.1} s); {} publishes retried; {} repeats of an attempt across the crash",
            back_after_kill.as_secs_f64(),
            back_after_stop.as_secs_f64(),
            ledger.retries,
            verdict.repeated_across_server_crash
        ),
    )
}

/// 10. Backpressure: the gateway is asked to enqueue far faster than one slow worker
///     drains a queue bounded to 100 jobs: it answers 429 (never a 5xx, never a 202 for a
///     job it did not store), and every job it accepted completes.
pub(crate) async fn backpressure() -> Row {
    let server = NatsServer::start();
    let url = server.url();
    let mut queue = fault_queue("bounded", 3);
    queue.max_messages = Some(100);
    let scene = Scene::new(&url, &[queue]).await;
    let mut fleet =
        Fleet::start(scene.rust_workers(1, "bounded", &["--concurrency", "4", "--sleep-ms", "50"]));
    let gateway = crate::gateway::Gateway::start(&url).await;
    let ledger = SharedLedger::default();
    produce_http(
        gateway.base.clone(),
        "bounded".into(),
        "bp".into(),
        plan(3000, &[]),
        None,
        16,
        OnRefusal::Record,
        Arc::clone(&ledger),
        Duration::from_secs(30),
    )
    .await;
    let verdict = scene.verdict("bounded", &ledger).await;
    fleet.stop(Duration::from_secs(10));
    gateway.stop().await;
    verdict.assert_sound("backpressure");
    let ledger = ledger.lock().expect("ledger");
    let throttled = ledger.refused.get(&429).copied().unwrap_or(0);
    let others: Vec<_> = ledger
        .refused
        .iter()
        .filter(|(code, _)| **code != 429)
        .collect();
    assert!(others.is_empty(), "answers other than 202/429: {others:?}");
    assert!(throttled > 0, "the gateway never pushed back");
    assert!(verdict.accepted > 0, "the gateway accepted nothing");
    assert_eq!(verdict.accepted + throttled, 3000);
    assert_eq!(verdict.unexpected, 0, "no job stored without its 202");
    assert_eq!(verdict.succeeded, verdict.accepted);
    assert_eq!(verdict.duplicates, 0, "no fault, no duplicate");
    Row::from_verdict(
        &verdict,
        0,
        Recovery::default(),
        format!("queue bounded to 100; {throttled} answered 429, 0 5xx"),
    )
}

/// 0. The checker catches what it is meant to: on a clean run it finds nothing; with a job
///    accepted but never stored, one run twice under the same delivery count, one stored
///    that nobody sent, and a job left in the stream, it reports each.
pub(crate) async fn checker_self_test() -> Row {
    let server = NatsServer::start();
    let url = server.url();
    let scene = Scene::new(&url, &[fault_queue("selftest", 3)]).await;
    let mut fleet = Fleet::start(scene.rust_workers(1, "selftest", &[]));
    let ledger = SharedLedger::default();
    produce(
        scene.producer.clone(),
        "selftest".into(),
        plan(50, &[]),
        500.0,
        Arc::clone(&ledger),
        Duration::from_secs(30),
    )
    .await;
    let clean = scene.verdict("selftest", &ledger).await;
    clean.assert_sound("checker self-test (clean run)");
    assert_eq!(clean.duplicates, 0, "no fault, no duplicate");
    assert_eq!(clean.succeeded, 50);
    fleet.stop(Duration::from_secs(10));

    // Now the anomalies, each of a kind the checker must name.
    let mut doctored = snapshot(&ledger);
    let never_stored = JobId::new();
    doctored.attempted.push(never_stored);
    doctored.accepted.push(never_stored);
    let mut executions = read_executions(&scene.log);
    let twice = executions[0].clone();
    executions.push(crate::harness::Execution {
        at_ms: twice.at_ms + 1,
        ..twice.clone()
    });
    let stranger = JobId::new();
    scene
        .producer
        .enqueue(
            "selftest",
            jobfleet_producer::Job::json(&serde_json::json!({"kind": "good"}))
                .expect("payload")
                .id(stranger),
        )
        .await
        .expect("enqueue the stranger");
    let js = scene.js();
    let found = check(js, "selftest", &doctored, &executions).await;
    assert_eq!(found.lost, vec![never_stored], "a lost job is reported");
    assert_eq!(
        found.unexplained_duplicates.len(),
        1,
        "a repeated attempt is reported"
    );
    assert_eq!(found.unexplained_duplicates[0].0, twice.id);
    assert_eq!(found.queue_left, 1, "a job left in the stream is reported");
    assert_eq!(
        found.unexplained_unexpected,
        vec![stranger],
        "a job nobody sent is reported"
    );
    assert_eq!(found.problems().len(), 4, "{:?}", found.problems());
    Row::from_verdict(
        &clean,
        0,
        Recovery::default(),
        "clean run sound; doctored runs: lost, repeated attempt, stranger and leftover all reported",
    )
}
