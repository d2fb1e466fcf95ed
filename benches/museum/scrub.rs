//! `museum scrub` over 600 × 256 KiB objects: the objects and bytes it checks per
//! second against the limits it is given (`scrub.objects-per-second`,
//! `scrub.bytes-per-second`), and the report → copy lag while scrubs run as hard as
//! their limits let them, against the lag target (100 ms at p99), with the lag
//! measured in this phase without a scrub as its baseline.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::harness::{Env, MIB, Museum, museum_cli, upload_and_report, wait_child};
use crate::lag;
use crate::report::{Figure, Target, record};

/// The workload: this many objects of `SIZE` bytes, each with two copies (three
/// tiers, every one readable: the bench's buckets have no storage class).
const OBJECTS: usize = 600;
const SIZE: usize = 256 * 1024;
/// The limits measured: objects per second above museum's default (20); bytes per
/// second below the rate a scrub reads at here without limits (6 to 7 MiB/s, see
/// the notes), or the figure would measure the reads and not the limit.
const OBJECTS_PER_SECOND: u64 = 50;
const BYTES_PER_SECOND: u64 = 4 * MIB as u64;
/// The share of tiers read in full where bytes are measured: about 70 MiB.
const READ_SHARE: &str = "0.15";
/// The scrub the lag is measured under: the objects limit above, museum's default
/// bytes limit, and enough tiers read that it reads as fast as it can here.
const BUSY_BYTES_PER_SECOND: u64 = 16 * MIB as u64;
const BUSY_READ_SHARE: &str = "0.3";
/// Limits none of these passes reaches (objects per second are a u32).
const UNLIMITED_OBJECTS: u64 = 1_000_000;
const UNLIMITED_BYTES: u64 = 1 << 40;

/// What one `museum scrub --restart` run did, read from its summary line.
struct Pass {
    secs: f64,
    objects: u64,
    tiers: u64,
    read: u64,
    bytes_read: u64,
}

impl Pass {
    fn objects_per_second(&self) -> f64 {
        self.objects as f64 / self.secs
    }

    fn mib_per_second(&self) -> f64 {
        self.bytes_read as f64 / MIB as f64 / self.secs
    }
}

pub async fn run(env: &Env, figures: &mut Vec<Figure>, notes: &mut Vec<String>) {
    eprintln!("bench: museum scrub over {OBJECTS} × 256 KiB objects against its limits");
    let name = "scrub";
    // No background scrub: the passes measured are the command's alone.
    let m = Museum::start_configured(env, name, "", "scrub:\n  interval: 0s\n");
    m.ready().await;
    let token = m.token(env, name, 4);
    upload_and_report(&m, &token, &vec![SIZE; OBJECTS], true).await;
    let mut done = 2 * OBJECTS as i64;
    m.wait_done(done).await;

    let heads = scrub(
        env,
        name,
        "0",
        Some((OBJECTS_PER_SECOND, UNLIMITED_BYTES)),
        None,
    )
    .await
    .unwrap();
    let reads = scrub(
        env,
        name,
        READ_SHARE,
        Some((UNLIMITED_OBJECTS, BYTES_PER_SECOND)),
        None,
    )
    .await
    .unwrap();
    let free_heads = scrub(env, name, "0", None, None).await.unwrap();
    let free_reads = scrub(env, name, READ_SHARE, None, None).await.unwrap();
    for pass in [&heads, &reads, &free_heads, &free_reads] {
        assert_eq!(
            pass.objects, OBJECTS as u64,
            "the pass checked every object"
        );
    }
    let limit_mib = BYTES_PER_SECOND as f64 / MIB as f64;
    notes.push(format!(
        "scrub of {OBJECTS} × 256 KiB objects ({} tiers), times from the command's start to its exit: HEADs only \
         at a limit of {OBJECTS_PER_SECOND} objects/s, {:.2} s = {:.1} objects/s (without limits {:.2} s = {:.0} \
         objects/s); {READ_SHARE} of the tiers read in full at a limit of {limit_mib:.0} MiB/s, {} tiers, {:.1} MiB \
         in {:.2} s = {:.2} MiB/s (without limits {:.1} MiB in {:.2} s = {:.1} MiB/s)",
        heads.tiers,
        heads.secs,
        heads.objects_per_second(),
        free_heads.secs,
        free_heads.objects_per_second(),
        reads.read,
        reads.bytes_read as f64 / MIB as f64,
        reads.secs,
        reads.mib_per_second(),
        free_reads.bytes_read as f64 / MIB as f64,
        free_reads.secs,
        free_reads.mib_per_second(),
    ));
    record(
        figures,
        Figure {
            name: "scrub_rate_vs_limit",
            what: format!(
                "{:.1} objects/s / limit {OBJECTS_PER_SECOND} objects/s",
                heads.objects_per_second()
            ),
            value: heads.objects_per_second() / OBJECTS_PER_SECOND as f64,
            target: Target::AtLeast(0.9),
        },
    );
    record(
        figures,
        Figure {
            name: "scrub_bytes_vs_limit",
            what: format!(
                "{:.2} MiB/s read / limit {limit_mib:.0} MiB/s",
                reads.mib_per_second()
            ),
            value: reads.mib_per_second() / limit_mib,
            target: Target::AtLeast(0.9),
        },
    );

    // The lag alone, then with scrubs running the whole time.
    eprintln!("bench: lag at 10 reports/s for 30 s, alone and under a scrub");
    let quiet = lag::measure(&m, &token, done).await;
    done += 2 * quiet.len() as i64;
    let stop = CancellationToken::new();
    let scrubbing = scrub_until(env, name, &stop);
    let measuring = async {
        let lags = lag::measure(&m, &token, done).await;
        stop.cancel();
        lags
    };
    let (passes, busy) = tokio::join!(scrubbing, measuring);
    drop(m);
    let (quiet_p50, quiet_p99) = (lag::quantile(&quiet, 0.5), lag::quantile(&quiet, 0.99));
    let (busy_p50, busy_p99) = (lag::quantile(&busy, 0.5), lag::quantile(&busy, 0.99));
    let checked: u64 = passes.iter().map(|p| p.objects).sum();
    let read: u64 = passes.iter().map(|p| p.bytes_read).sum();
    let secs: f64 = passes.iter().map(|p| p.secs).sum();
    notes.push(format!(
        "lag at 10 reports/s of 1 MiB for 30 s, in the scrub phase: alone p50 {quiet_p50:.0} ms, p99 \
         {quiet_p99:.0} ms; under scrubs at {OBJECTS_PER_SECOND} objects/s and {:.0} MiB/s reading \
         {BUSY_READ_SHARE} of the tiers ({} runs, {checked} objects checked and {:.1} MiB read in {secs:.1} s: {:.1} \
         objects/s, {:.2} MiB/s) p50 {busy_p50:.0} ms, p99 {busy_p99:.0} ms; p99 under the scrub / alone = {:.2}",
        BUSY_BYTES_PER_SECOND as f64 / MIB as f64,
        passes.len(),
        read as f64 / MIB as f64,
        checked as f64 / secs,
        read as f64 / MIB as f64 / secs,
        busy_p99 / quiet_p99.max(1.0),
    ));
    record(
        figures,
        Figure {
            name: "lag_p99_under_scrub_ms",
            what: format!(
                "p50 {busy_p50:.0} ms, p99 {busy_p99:.0} ms over {} reports under a scrub (alone: p99 {quiet_p99:.0} ms)",
                busy.len()
            ),
            value: busy_p99,
            target: Target::AtMost(100.0),
        },
    );
    for s in &env.servers {
        s.wipe();
    }
}

/// Scrubs as busy as their limits let them, one `museum scrub --restart` after the other, until
/// `stop` fires; the one then running is stopped as Ctrl-C stops it and counted up to
/// there.
async fn scrub_until(env: &Env, name: &str, stop: &CancellationToken) -> Vec<Pass> {
    let limits = Some((OBJECTS_PER_SECOND, BUSY_BYTES_PER_SECOND));
    let mut passes = Vec::new();
    while !stop.is_cancelled() {
        passes.extend(scrub(env, name, BUSY_READ_SHARE, limits, Some(stop)).await);
    }
    passes
}

/// Runs `museum scrub --restart --read-sample <share>` at `limits` (objects/s,
/// bytes/s), or with `--no-limit`, to its end or until `stop` fires (it is then sent
/// SIGTERM, saves its place and prints what it did); its output is kept in the
/// museum's folder. `None` if it was stopped before it printed a summary.
async fn scrub(
    env: &Env,
    name: &str,
    share: &str,
    limits: Option<(u64, u64)>,
    stop: Option<&CancellationToken>,
) -> Option<Pass> {
    let mut cmd = museum_cli(env, name);
    cmd.args(["scrub", "--restart", "--read-sample", share]);
    match limits {
        Some((objects, bytes)) => {
            cmd.env("ENTE_SCRUB_OBJECTS_PER_SECOND", objects.to_string())
                .env("ENTE_SCRUB_BYTES_PER_SECOND", bytes.to_string());
        }
        None => {
            cmd.arg("--no-limit");
        }
    }
    let out_path = env.dir.join(name).join("scrub.out");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(env.dir.join(name).join("scrub.log"))
        .unwrap();
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(log);
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let never = CancellationToken::new();
    let (status, stopped) = tokio::select! {
        status = wait_child(&mut child) => (status, false),
        () = stop.unwrap_or(&never).cancelled() => {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success(), "kill -TERM failed");
            (wait_child(&mut child).await, true)
        }
    };
    let secs = start.elapsed().as_secs_f64();
    // Stopped before it set up its handler, a scrub dies of the signal.
    if stopped && !status.success() {
        return None;
    }
    assert!(status.success(), "museum scrub failed: {status}");
    parse_summary(&out_path, secs)
}

/// Reads `scrub: N objects, T tiers checked (R read in full, B bytes): …`.
fn parse_summary(path: &Path, secs: f64) -> Option<Pass> {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("scrub: ") && l.contains(" tiers checked ("))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(
        words.len() > 11 && words[2] == "objects," && words[4] == "tiers" && words[11] == "bytes):",
        "an unexpected summary: {line}"
    );
    let number = |w: &str| -> u64 { w.trim_start_matches('(').parse().unwrap() };
    Some(Pass {
        secs,
        objects: number(words[1]),
        tiers: number(words[3]),
        read: number(words[6]),
        bytes_read: number(words[10]),
    })
}
