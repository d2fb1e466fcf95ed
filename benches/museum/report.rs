//! The figures: each a value against a target fixed beforehand, printed as a table
//! and as `ratio NAME VALUE` lines, and written to BENCHMARKS.md by a full run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// A figure's target: the value must be at least, or at most, this.
#[derive(Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

pub struct Figure {
    pub name: &'static str,
    pub what: String,
    pub value: f64,
    pub target: Target,
}

impl Figure {
    fn met(&self) -> bool {
        match self.target {
            Target::AtLeast(t) => self.value >= t,
            Target::AtMost(t) => self.value <= t,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtLeast(t) => format!("≥ {t}"),
            Target::AtMost(t) => format!("≤ {t}"),
        }
    }
}

/// Keeps a figure and prints it at once.
pub fn record(figures: &mut Vec<Figure>, f: Figure) {
    eprintln!("bench: {} = {:.3} ({})", f.name, f.value, f.what);
    figures.push(f);
}

pub fn report(figures: &[Figure], notes: &[String], took: Duration, write_doc: bool) {
    let mut table =
        String::from("| figure | measured | value | target | met |\n|---|---|---|---|---|\n");
    for f in figures {
        let _ = writeln!(
            table,
            "| `{}` | {} | {:.2} | {} | {} |",
            f.name,
            f.what,
            f.value,
            f.target_text(),
            if f.met() { "yes" } else { "no" }
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("?".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let date = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    println!("{table}");
    for n in notes {
        println!("{n}");
    }
    for f in figures {
        println!("ratio {} {:.3}", f.name, f.value);
    }
    let doc = format!(
        "# Benchmarks\n\nWritten by `cargo bench --bench museum` on {date}, in {:.0} s.\n\
         Machine: {cores} cores (nproc), {mem} memory. Every figure is measured against its baseline in the same \
         run, on loopback, with three s3s-fs servers (one per bucket) in the bench process and museum as a \
         separate process on SQLite, stopped (SIGSTOP) while the replication baselines run.\n\n{table}\n{}\n",
        took.as_secs_f64(),
        notes.iter().map(|n| format!("- {n}\n")).collect::<String>()
    );
    if write_doc {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
            doc,
        )
        .unwrap();
    }
}
