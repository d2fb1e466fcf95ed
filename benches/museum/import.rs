//! `museum import` of a folder (300 × 1 MiB + 8 × 32 MiB) into the hot bucket, with
//! no museum server running, against `rclone copy` of the same folder to the same
//! bucket (rclone's best of its default and `--transfers 8`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::harness::{
    Env, MIB, RUNS, bytes_of, have_rclone, median, museum_cli, prepare, rclone_remote, wait_child,
};
use crate::report::{Figure, Target, record};

/// The folder: this many files of `SMALL_SIZE`, and of `LARGE_SIZE`.
const SMALL_FILES: usize = 300;
const SMALL_SIZE: usize = MIB;
const LARGE_FILES: usize = 8;
const LARGE_SIZE: usize = 32 * MIB;
/// The hot bucket, museum's primary.
const HOT: &str = "b2-eu-cen";
/// Where rclone copies the folder to in the hot bucket.
const RCLONE_PREFIX: &str = "rclone-import";

pub async fn run(env: &Env, figures: &mut Vec<Figure>, notes: &mut Vec<String>) {
    let files = SMALL_FILES + LARGE_FILES;
    let bytes = SMALL_FILES * SMALL_SIZE + LARGE_FILES * LARGE_SIZE;
    eprintln!(
        "bench: museum import of {files} files ({} MiB) against rclone copy",
        bytes / MIB
    );
    let name = "import";
    // Its configuration and database; no server, so nothing replicates meanwhile.
    prepare(env, name);
    let src = env.dir.join("import-src");
    for i in 0..SMALL_FILES {
        write_file(
            &src.join("small").join(format!("{i:04}.bin")),
            SMALL_SIZE,
            i,
        );
    }
    for i in 0..LARGE_FILES {
        write_file(
            &src.join("large").join(format!("{i:02}.bin")),
            LARGE_SIZE,
            SMALL_FILES + i,
        );
    }
    let have_rclone = have_rclone();
    let (mut museum_t, mut default_t, mut t8_t) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        eprintln!("bench: import run {}/{RUNS}", run + 1);
        // A new user each run: an import skips the files a user already has.
        let user = 10 + run;
        let mut cmd = museum_cli(env, name);
        cmd.args([
            "import",
            &src.display().to_string(),
            "--user",
            &user.to_string(),
        ]);
        let out = env.dir.join(name).join("import.out");
        let (secs, status) = timed(cmd, &out, &env.dir.join(name).join("import.log")).await;
        assert!(status.success(), "museum import failed: {status}");
        let summary = std::fs::read_to_string(&out).unwrap();
        assert!(
            summary.contains(&format!(
                "import: {files} files, {files} imported ({bytes} bytes)"
            )),
            "museum imported every file: {summary}"
        );
        assert_eq!(
            stored(env, &user.to_string()),
            files,
            "museum stored every file"
        );
        museum_t.push(secs);
        wipe_prefix(env, &user.to_string());
        if have_rclone {
            for (transfers, times) in [(None, &mut default_t), (Some(8), &mut t8_t)] {
                times.push(rclone_copy(env, &src, transfers).await);
                assert_eq!(
                    stored(env, RCLONE_PREFIX),
                    files,
                    "rclone copied every file"
                );
                wipe_prefix(env, RCLONE_PREFIX);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&src);
    let museum_s = median(museum_t.clone());
    let mib_s = |s: f64| bytes as f64 / MIB as f64 / s;
    if !have_rclone {
        notes.push(format!(
            "import of {files} files ({} MiB): museum {museum_s:.2} s ({:.0} MiB/s); rclone is not installed: \
             import_vs_rclone not measured (apt-get install rclone)",
            bytes / MIB,
            mib_s(museum_s)
        ));
        return;
    }
    let (default_s, t8_s) = (median(default_t.clone()), median(t8_t.clone()));
    let rclone_s = default_s.min(t8_s);
    notes.push(format!(
        "import of {files} files ({SMALL_FILES} × 1 MiB + {LARGE_FILES} × 32 MiB, {} MiB) into {HOT}, no server \
         running: museum import {museum_s:.2} s ({:.0} MiB/s), rclone copy {default_s:.2} s by default and \
         {t8_s:.2} s with --transfers 8 (medians of {RUNS}); runs (s) museum {museum_t:.2?}, rclone default \
         {default_t:.2?}, --transfers 8 {t8_t:.2?}",
        bytes / MIB,
        mib_s(museum_s)
    ));
    record(
        figures,
        Figure {
            name: "import_vs_rclone",
            what: format!("rclone's best {rclone_s:.2} s / museum import {museum_s:.2} s"),
            value: rclone_s / museum_s,
            target: Target::AtLeast(1.0),
        },
    );
}

fn write_file(path: &Path, size: usize, seed: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes_of(size, seed)).unwrap();
}

/// Runs `cmd` to its end, its output to `out` and its log to `log`; its time.
async fn timed(mut cmd: Command, out: &Path, log: &Path) -> (f64, std::process::ExitStatus) {
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(log).unwrap());
    let start = Instant::now();
    let status = wait_child(&mut cmd.spawn().unwrap()).await;
    (start.elapsed().as_secs_f64(), status)
}

/// Times `rclone copy` of the folder to `RCLONE_PREFIX` in the hot bucket.
async fn rclone_copy(env: &Env, src: &Path, transfers: Option<usize>) -> f64 {
    let mut cmd = Command::new("rclone");
    cmd.env_remove("AWS_CA_BUNDLE");
    rclone_remote(&mut cmd, "hot", &env.servers[0]);
    cmd.args([
        "copy",
        &src.display().to_string(),
        &format!("hot:{HOT}/{RCLONE_PREFIX}"),
        "--s3-no-check-bucket",
    ]);
    if let Some(n) = transfers {
        cmd.args(["--transfers", &n.to_string()]);
    }
    let (secs, status) = timed(
        cmd,
        &env.dir.join("rclone-import.out"),
        &env.dir.join("rclone-import.log"),
    )
    .await;
    assert!(status.success(), "rclone copy failed: {status}");
    secs
}

/// Files under `<prefix>/` in the hot bucket, counted from the server's files.
fn stored(env: &Env, prefix: &str) -> usize {
    let s = &env.servers[0];
    let mut count = 0;
    let mut folders = vec![s.root.join(&s.bucket).join(prefix)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                count += 1;
            }
        }
    }
    count
}

fn wipe_prefix(env: &Env, prefix: &str) {
    let s = &env.servers[0];
    let _ = std::fs::remove_dir_all(s.root.join(&s.bucket).join(prefix));
}
