//! Many small objects (2,000 × 64 KiB) to both targets: museum's copies per second
//! against the best of two concurrent `rclone copy` (default and --transfers 16).

use crate::harness::{
    Env, Museum, RUNS, have_rclone, median, museum_run, rclone_run, upload_and_report,
};
use crate::report::{Figure, Target, record};

/// The small-objects workload: this many objects of `SMALL_SIZE` bytes.
const SMALL_OBJECTS: usize = 2000;
const SMALL_SIZE: usize = 64 * 1024;
/// rclone takes about 100 s per configuration on the small objects here, so it runs
/// once per configuration where museum runs `RUNS` times.
const SMALL_RCLONE_RUNS: usize = 1;

pub async fn run(env: &Env, figures: &mut Vec<Figure>, notes: &mut Vec<String>) {
    // Many small objects to both targets: museum's copies/s against rclone's best.
    eprintln!("bench: {SMALL_OBJECTS} × 64 KiB objects to both targets, against rclone");
    let m = Museum::start(env, "small");
    m.ready().await;
    // Its own user, so its keys are the folder `2/` that rclone is given.
    let user = 2;
    let token = m.token(env, "small", user);
    let small = upload_and_report(&m, &token, &vec![SMALL_SIZE; SMALL_OBJECTS], true).await;
    let copies = 2 * small.len() as i64;
    m.wait_done(copies).await;
    if have_rclone() {
        let prefix = user.to_string();
        let (mut museum_t, mut default_t, mut t16_t) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..RUNS {
            eprintln!("bench: small objects run {}/{RUNS}", run + 1);
            if run < SMALL_RCLONE_RUNS {
                m.signal("STOP");
                default_t.push(rclone_run(env, &prefix, None));
                assert_eq!(
                    copied_files(env, &prefix),
                    copies,
                    "rclone copied every object"
                );
                t16_t.push(rclone_run(env, &prefix, Some(16)));
                assert_eq!(
                    copied_files(env, &prefix),
                    copies,
                    "rclone copied every object"
                );
                m.signal("CONT");
            }
            museum_t.push(museum_run(env, &m, copies).await);
            assert_eq!(
                copied_files(env, &prefix),
                copies,
                "museum copied every object"
            );
        }
        let per_s = |t: &[f64]| copies as f64 / median(t.to_vec());
        let (museum_r, default_r, t16_r) = (per_s(&museum_t), per_s(&default_t), per_s(&t16_t));
        let rclone_r = default_r.max(t16_r);
        notes.push(format!(
            "{SMALL_OBJECTS} × 64 KiB objects to both targets ({copies} copies): museum {museum_r:.0} copies/s, \
             rclone {default_r:.0} copies/s by default and {t16_r:.0} with --transfers 16 (two concurrent \
             `rclone copy`; medians of {RUNS} museum runs, {SMALL_RCLONE_RUNS} per rclone configuration); runs (s) museum {museum_t:.2?}, rclone default {default_t:.2?}, \
             --transfers 16 {t16_t:.2?}"
        ));
        record(
            figures,
            Figure {
                name: "small_objects_vs_rclone",
                what: format!(
                    "museum {museum_r:.0} copies/s / rclone's best {rclone_r:.0} copies/s"
                ),
                value: museum_r / rclone_r,
                target: Target::AtLeast(2.0),
            },
        );
    } else {
        notes.push(
            "rclone is not installed: small_objects_vs_rclone not measured (apt-get install rclone)"
                .to_owned(),
        );
    }
    drop(m);
    for s in &env.servers {
        s.wipe();
    }
}

/// Objects under `<bucket>/<prefix>/` in both targets, counted from the servers' files.
fn copied_files(env: &Env, prefix: &str) -> i64 {
    env.servers[1..]
        .iter()
        .map(|s| {
            std::fs::read_dir(s.root.join(&s.bucket).join(prefix)).map_or(0, |d| {
                d.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
                    .count()
            }) as i64
        })
        .sum()
}
