//! Peak memory (VmHWM) of a museum process replicating one 1 GiB object, against a
//! fixed target (64 MiB).

use crate::harness::{Env, MIB, Museum, upload_and_report};
use crate::report::{Figure, Target, record};

pub async fn run(env: &Env, figures: &mut Vec<Figure>) {
    // Peak memory of a museum process replicating one 1 GiB object.
    eprintln!("bench: peak memory while replicating 1 GiB");
    let m = Museum::start(env, "rss");
    m.ready().await;
    let token = m.token(env, "rss", 1);
    let idle = m.peak_rss_mib();
    upload_and_report(&m, &token, &[1024 * MIB], true).await;
    m.wait_done(2).await;
    let peak = m.peak_rss_mib();
    record(
        figures,
        Figure {
            name: "peak_rss_mib_1gib_object",
            what: format!("VmHWM {peak:.1} MiB (idle {idle:.1} MiB)"),
            value: peak,
            target: Target::AtMost(64.0),
        },
    );
    drop(m);
}
