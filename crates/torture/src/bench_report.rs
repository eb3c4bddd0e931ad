//! Renders `docs/BENCHMARKS.md` (and its PNG plots) from the benches'
//! output of **one** run of `cargo xtask bench`: `meter-bench`,
//! `store-bench`, `collect-bench` and `sync-bench` with `--json`, and the
//! text report of `cargo xtask firmware`.
//!
//! The document is curated, not a dump: a summary table of the headline
//! figures (ours, the baseline measured in the same run, their ratio, the
//! target from the project's issues, met or not), then one section per bench
//! with a short "how measured" paragraph and tables chosen for that bench,
//! and two plots drawn with `plotters` (metering error against load, flash
//! erases per sector). Figures are only ever read from this run's outputs: a
//! bench that did not run, or a figure its output lacks, is printed as "not
//! measured" with the reason, never filled in from elsewhere, and no ratio
//! mixes figures of different runs.
//!
//! Targets are those of the issues: #3 metering (≤ 0.5 % at PF 1 10–120 %,
//! ≤ 1 % at 5 % and PF 0.5, 1-hour energy within 0.5 %, ≤ 1/5 of calcVI's
//! instructions, ≤ 2 % of a 160 MHz core), #4 store (≥ 60 days, aim 90;
//! write amplification ≤ 1.3; erase spread ≤ 2; 0 committed records lost;
//! RAM < 8 KiB), #6 collect (< 2 s for 30 days), #7 sync (≥ 50,000
//! records/s over HTTP), #9 firmware (image < 640 KiB in a 1 MiB slot;
//! ≥ 100 KiB left for heap and stack).

mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

pub use plot::{
    METERING_PLOT, PlotError, STORE_PLOT, SweepPoint, WearSeries, plot_metering_error,
    plot_store_wear,
};

/// Where and when the run happened.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// CPU, cores, OS (see [`crate::campaign::machine`]).
    pub machine: String,
    /// When the report was rendered (end of the run), `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// `git rev-parse` of the checkout, with a note if the tree was dirty.
    pub commit: String,
}

/// What one bench produced in this run.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The bench's `--json` document.
    Json(Value),
    /// Plain-text output (the firmware size report).
    Text(String),
    /// Why the bench has no figures in this run.
    Missing(String),
}

/// One bench's output.
#[derive(Clone, Debug)]
pub struct BenchOutput {
    /// Bench name (`metering`, `store`, `collect`, `sync`, `firmware`).
    pub name: String,
    /// What it produced.
    pub outcome: Outcome,
}

/// Which direction is better for a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Smaller is better (errors, bytes, seconds).
    Lower,
    /// Larger is better (days, records/s).
    Higher,
}

/// One line of the summary table.
#[derive(Clone, Debug, Serialize)]
pub struct Headline {
    /// Bench it comes from.
    pub bench: &'static str,
    /// What is measured.
    pub what: String,
    /// Unit of `ours` and `baseline`.
    pub unit: &'static str,
    /// Our figure, or `None` with [`Headline::not_measured`].
    pub ours: Option<f64>,
    /// The baseline's figure in the same run, if the bench measures one.
    pub baseline: Option<f64>,
    /// What the baseline is (e.g. "calcVI port").
    pub baseline_name: String,
    /// Shown instead of a number for the baseline (e.g. "∞ (max 2196, min 0)"
    /// or why there is none).
    pub baseline_text: Option<String>,
    /// Which direction is better.
    pub better: Better,
    /// ours / baseline, both from this run.
    pub ours_over_baseline: Option<f64>,
    /// How many times better ours is (baseline/ours for [`Better::Lower`]).
    pub gain: Option<f64>,
    /// Word after the gain ("lower", "faster", ...).
    pub gain_word: &'static str,
    /// The target, as text.
    pub target: Option<String>,
    /// Whether ours meets it.
    pub met: Option<bool>,
    /// Why there is no figure, if there is none.
    pub not_measured: Option<String>,
}

/// Everything one render produced.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The Markdown document.
    pub markdown: String,
    /// The summary lines, for `--json`.
    pub headlines: Vec<Headline>,
    /// Plots written (file paths) and plots that could not be drawn (why).
    pub plots: Vec<(PathBuf, Result<(), String>)>,
    /// Firmware figures parsed from the text report, if any.
    pub firmware: Option<FirmwareSizes>,
}

// ------------------------------------------------------------------ numbers

/// Formats a figure with a precision that suits its size.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "—".into()
        } else {
            "∞".into()
        };
    }
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if x.fract() == 0.0 && a < 1e15 {
        if a >= 10_000.0 {
            group(format!("{x:.0}"))
        } else {
            format!("{x:.0}")
        }
    } else if a >= 10_000.0 {
        group(format!("{x:.0}"))
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        // three significant digits
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{x:.digits$}")
    }
}

/// A figure as written in a target: no padding zeros (`0.5`, `1`).
fn fmt_plain(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Thousands separators for an integer string.
fn group(s: String) -> String {
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// A signed error figure (`+0.018`).
fn fmt_err(x: f64) -> String {
    if x.is_finite() && x >= 0.0 {
        format!("+{}", fmt_num(x))
    } else {
        fmt_num(x)
    }
}

fn fmt_gain(g: f64) -> String {
    if g >= 100.0 {
        format!("{}×", group(format!("{g:.0}")))
    } else if g >= 10.0 {
        format!("{g:.1}×")
    } else {
        format!("{g:.2}×")
    }
}

fn with_unit(x: f64, unit: &str) -> String {
    if unit.is_empty() {
        fmt_num(x)
    } else {
        format!("{} {unit}", fmt_num(x))
    }
}

fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown table.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", head.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn num(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn text<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

// ------------------------------------------------------------------ headlines

/// Builder for one headline; `ours`/`baseline` are looked up by JSON pointer.
struct Line {
    h: Headline,
    floor: Option<f64>,
}

impl Line {
    fn new(
        bench: &'static str,
        what: impl Into<String>,
        unit: &'static str,
        better: Better,
    ) -> Self {
        Line {
            h: Headline {
                bench,
                what: what.into(),
                unit,
                ours: None,
                baseline: None,
                baseline_name: String::new(),
                baseline_text: None,
                better,
                ours_over_baseline: None,
                gain: None,
                gain_word: match better {
                    Better::Lower => "lower",
                    Better::Higher => "higher",
                },
                target: None,
                met: None,
                not_measured: None,
            },
            floor: None,
        }
    }

    fn ours(mut self, x: Option<f64>, why: impl FnOnce() -> String) -> Self {
        match x {
            Some(x) => self.h.ours = Some(x),
            None => self.h.not_measured = Some(why()),
        }
        self
    }

    fn baseline(mut self, name: &str, x: Option<f64>) -> Self {
        self.h.baseline_name = name.into();
        self.h.baseline = x;
        if x.is_none() && self.h.baseline_text.is_none() {
            self.h.baseline_text = Some(format!(
                "not measured: no {name} figure in the bench output"
            ));
        }
        self
    }

    fn no_baseline(mut self, why: &str) -> Self {
        self.h.baseline_text = Some(format!("not measured: {why}"));
        self
    }

    fn baseline_text(mut self, t: impl Into<String>) -> Self {
        self.h.baseline_text = Some(t.into());
        self
    }

    fn word(mut self, w: &'static str) -> Self {
        self.h.gain_word = w;
        self
    }

    /// Our figure is floored at `f` for the gain (an error of 0.00001 %
    /// would only measure luck).
    fn floor(mut self, f: f64) -> Self {
        self.floor = Some(f);
        self
    }

    fn target(mut self, t: impl Into<String>, met: impl FnOnce(&Headline) -> Option<bool>) -> Self {
        self.h.target = Some(t.into());
        self.h.met = met(&self.h);
        self
    }

    fn done(mut self) -> Headline {
        if let (Some(o), Some(b)) = (self.h.ours, self.h.baseline)
            && o.is_finite()
            && b.is_finite()
        {
            if b != 0.0 {
                self.h.ours_over_baseline = Some(o / b);
            }
            let o = o.abs().max(self.floor.unwrap_or(0.0));
            let b = b.abs();
            self.h.gain = match self.h.better {
                Better::Lower if o > 0.0 && b > 0.0 => Some(b / o),
                Better::Higher if b > 0.0 && o > 0.0 => Some(o / b),
                _ => None,
            };
        }
        if self.h.ours.is_none() {
            self.h.met = None;
        }
        self.h
    }
}

fn absent(bench: &str, field: &str) -> impl FnOnce() -> String {
    let s = format!("`{field}` absent from the {bench} output");
    move || s
}

fn le(limit: f64) -> impl FnOnce(&Headline) -> Option<bool> {
    move |h| h.ours.map(|o| o.abs() <= limit)
}

fn ge(limit: f64) -> impl FnOnce(&Headline) -> Option<bool> {
    move |h| h.ours.map(|o| o >= limit)
}

/// The firmware's cost profile (opt-level "s"), else the first one.
fn firmware_profile(m: &Value) -> Option<&Value> {
    let profiles = m.pointer("/cost/profiles")?.as_array()?;
    profiles
        .iter()
        .find(|p| p.get("opt_level").and_then(Value::as_str) == Some("s"))
        .or_else(|| profiles.first())
}

fn metering_lines(m: &Value) -> Vec<Headline> {
    let b = "meter-bench";
    let calc = "calcVI port";
    let s = "/accuracy/summary";
    let mut out = vec![
        Line::new(
            "metering",
            "Real-power error, PF 1, 10–120 % of rating (worst |error|)",
            "%",
            Better::Lower,
        )
        .ours(
            num(m, &format!("{s}/pf1_10_120_ours_max_pct")),
            absent(b, "accuracy.summary.pf1_10_120_ours_max_pct"),
        )
        .baseline(calc, num(m, &format!("{s}/pf1_10_120_baseline_max_pct")))
        .target("≤ 0.5 %", le(0.5))
        .done(),
        Line::new(
            "metering",
            "Real-power error at 5 % of rating or PF 0.5 (worst |error|)",
            "%",
            Better::Lower,
        )
        .ours(
            num(m, &format!("{s}/low_or_pf05_ours_max_pct")),
            absent(b, "accuracy.summary.low_or_pf05_ours_max_pct"),
        )
        .baseline(calc, num(m, &format!("{s}/low_or_pf05_baseline_max_pct")))
        .target("≤ 1 %", le(1.0))
        .done(),
    ];
    let e = "/accuracy/energy_hour";
    let ours_energy = ["import", "export", "net"]
        .iter()
        .map(|k| num(m, &format!("{e}/ours_{k}_err_pct")).map(f64::abs))
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.into_iter().fold(0.0, f64::max));
    out.push(
        Line::new(
            "metering",
            "Energy over a 1-hour varying load, |error| (ours: worst of import/export/net; calcVI: net, 1 s bursts every 5 s)",
            "%",
            Better::Lower,
        )
        .ours(ours_energy, absent(b, "accuracy.energy_hour"))
        .baseline(
            "calcVI port",
            num(m, &format!("{e}/baseline_5s_err_pct")).map(f64::abs),
        )
        .floor(0.01)
        .target("≤ 0.5 %", le(0.5))
        .done(),
    );
    let p = firmware_profile(m);
    let net = |k: &str| p.and_then(|p| num(p, &format!("/net/{k}")));
    for (label, key) in [("1 V + 1 CT", "1v1ct"), ("1 V + 3 CT", "1v3ct")] {
        out.push(
            Line::new(
                "metering",
                format!("Instructions per sample set on rv32imc, {label} (net, opt-level s)"),
                "",
                Better::Lower,
            )
            .word("fewer")
            .ours(
                net(&format!("ours_{key}")),
                absent(b, &format!("cost.profiles[].net.ours_{key}")),
            )
            .baseline(calc, net(&format!("baseline_{key}")))
            .target("≤ 1/5 of calcVI", |h| match (h.ours, h.baseline) {
                (Some(o), Some(b)) if b > 0.0 => Some(o / b <= 0.2),
                _ => None,
            })
            .done(),
        );
    }
    out.push(
        Line::new(
            "metering",
            "CPU share, 1 V + 3 CT at 4 kS/s per channel on a 160 MHz core",
            "%",
            Better::Lower,
        )
        .ours(
            p.and_then(|p| num(p, "/cpu_share_1v3ct_pct")),
            absent(b, "cost.profiles[].cpu_share_1v3ct_pct"),
        )
        .baseline(
            "calcVI sampling continuously",
            p.and_then(|p| num(p, "/baseline_cpu_share_1v3ct_pct")),
        )
        .target("≤ 2 %", le(2.0))
        .done(),
    );
    out
}

/// The two rows of the store bench: ours and the original on littlefs2.
fn store_rows(s: &Value) -> (Option<&Value>, Option<&Value>) {
    let rows = s.get("results").and_then(Value::as_array);
    let find = |prefix: &str| {
        rows.and_then(|r| {
            r.iter().find(|x| {
                x.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with(prefix))
            })
        })
    };
    (find("ofmon"), find("original"))
}

fn store_lines(s: &Value) -> Vec<Headline> {
    let b = "store-bench";
    let lfs = "original layout on littlefs2";
    let (o, l) = store_rows(s);
    let of = |k: &str| o.and_then(|r| num(r, &format!("/{k}")));
    let lf = |k: &str| l.and_then(|r| num(r, &format!("/{k}")));
    let cuts = num(s, "/workload/cuts").or_else(|| of("cuts"));
    let spread_text = l.map(|r| {
        match (
            num(r, "/erase_spread"),
            num(r, "/erase_max"),
            num(r, "/erase_min"),
        ) {
            (Some(x), _, _) => fmt_num(x),
            (None, Some(max), Some(min)) => {
                format!("∞ (max {}, min {})", fmt_num(max), fmt_num(min))
            }
            _ => "not measured".into(),
        }
    });
    let mut spread = Line::new(
        "store",
        "Erase spread max/min over the log sectors",
        "",
        Better::Lower,
    )
    .ours(of("erase_spread"), absent(b, "erase_spread"))
    .baseline(lfs, lf("erase_spread"));
    if let Some(t) = spread_text {
        spread = spread.baseline_text(t);
    }
    let lost_what = match cuts {
        Some(c) => format!("Committed records lost over {} power cuts", fmt_num(c)),
        None => "Committed records lost over the bench's power cuts".into(),
    };
    vec![
        Line::new(
            "store",
            "Days of 1-minute 1 V + 3 CT data in 0x1e0000 bytes",
            "days",
            Better::Higher,
        )
        .word("more")
        .ours(of("days_in_region"), absent(b, "days_in_region"))
        .baseline(lfs, lf("days_in_region"))
        .target("≥ 60 (aim 90)", ge(60.0))
        .done(),
        Line::new(
            "store",
            "Flash bytes per interval, all overheads",
            "B",
            Better::Lower,
        )
        .word("fewer")
        .ours(of("bytes_per_interval"), absent(b, "bytes_per_interval"))
        .baseline(lfs, lf("bytes_per_interval"))
        .done(),
        Line::new(
            "store",
            "Write amplification (flash bytes programmed / payload)",
            "",
            Better::Lower,
        )
        .ours(of("write_amplification"), absent(b, "write_amplification"))
        .baseline(lfs, lf("write_amplification"))
        .target("≤ 1.3", le(1.3))
        .done(),
        Line::new("store", "Sector erases per day", "", Better::Lower)
            .word("fewer")
            .ours(of("erases_per_day"), absent(b, "erases_per_day"))
            .baseline(lfs, lf("erases_per_day"))
            .done(),
        spread.target("≤ 2", le(2.0)).done(),
        Line::new("store", lost_what, "", Better::Lower)
            .ours(of("records_lost"), absent(b, "records_lost"))
            .baseline(lfs, lf("records_lost"))
            .target("0", |h| h.ours.map(|x| x == 0.0))
            .done(),
        Line::new("store", "Store RAM", "B", Better::Lower)
            .ours(of("ram_bytes"), absent(b, "ram_bytes"))
            .no_baseline("littlefs2's RAM is not measured by the bench")
            .target("< 8 KiB", |h| h.ours.map(|x| x < 8192.0))
            .done(),
    ]
}

/// The baseline run of collect-bench with the given `synchronous` setting.
fn collect_baseline<'a>(c: &'a Value, sync: &str) -> Option<&'a Value> {
    c.get("baseline")?
        .as_array()?
        .iter()
        .find(|b| b.get("synchronous").and_then(Value::as_str) == Some(sync))
}

fn collect_lines(c: &Value) -> Vec<Headline> {
    let b = "collect-bench";
    let full = collect_baseline(c, "FULL");
    let days = num(c, "/days");
    let what = match days {
        Some(d) => format!(
            "Collect a {}-day 1 V + 3 CT backlog into SQLite (durable commits)",
            fmt_num(d)
        ),
        None => "Collect the bench's backlog into SQLite (durable commits)".into(),
    };
    let base_name = if full
        .and_then(|f| f.get("extrapolated"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        "original protocol, synchronous=FULL, insert time extrapolated"
    } else {
        "original protocol, synchronous=FULL"
    };
    vec![
        Line::new("collect", what, "s", Better::Lower)
            .word("faster")
            .ours(num(c, "/ours/seconds"), absent(b, "ours.seconds"))
            .baseline(base_name, full.and_then(|f| num(f, "/seconds")))
            .target("< 2 s", |h| h.ours.map(|x| x < 2.0))
            .done(),
        Line::new("collect", "Wire bytes per record", "B", Better::Lower)
            .word("fewer")
            .ours(
                num(c, "/ours/bytes_per_record"),
                absent(b, "ours.bytes_per_record"),
            )
            .baseline(
                "original protocol",
                full.or_else(|| collect_baseline(c, "NORMAL"))
                    .and_then(|f| num(f, "/bytes_per_record")),
            )
            .done(),
    ]
}

/// The sync-bench row whose `what` starts with `way` (`http`, `mqtt`, `original`).
fn sync_row<'a>(y: &'a Value, way: &str) -> Option<&'a Value> {
    y.get("results")?.as_array()?.iter().find(|r| {
        r.get("what")
            .and_then(Value::as_str)
            .is_some_and(|w| w.split(':').next().map(str::trim) == Some(way))
    })
}

fn sync_lines(y: &Value) -> Vec<Headline> {
    let b = "sync-bench";
    let http = sync_row(y, "http");
    let orig = sync_row(y, "original");
    vec![
        Line::new(
            "sync",
            "Sync to ThingsBoard (mock) over HTTP, records/s wall clock (a record = 1 V + 3 CT interval)",
            "/s",
            Better::Higher,
        )
        .word("faster")
        .ours(
            http.and_then(|r| num(r, "/records_per_s")),
            absent(b, "results[http].records_per_s"),
        )
        .baseline("original's way", orig.and_then(|r| num(r, "/records_per_s")))
        .target("≥ 50,000 /s", ge(50_000.0))
        .done(),
        Line::new(
            "sync",
            "Sync over HTTP, records per client CPU-second (independent of other load)",
            "/s",
            Better::Higher,
        )
        .ours(
            http.and_then(|r| num(r, "/records_per_client_cpu_s")),
            absent(b, "results[http].records_per_client_cpu_s"),
        )
        .baseline(
            "original's way",
            orig.and_then(|r| num(r, "/records_per_client_cpu_s")),
        )
        .target("≥ 50,000 /s", ge(50_000.0))
        .done(),
    ]
}

/// Firmware figures read from `cargo xtask firmware`'s report.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FirmwareSizes {
    /// Flash text + rodata (bytes).
    pub flash_text_rodata: Option<u64>,
    /// The flashable image (bytes).
    pub image: Option<u64>,
    /// OTA slot size (KiB).
    pub slot_kib: Option<u64>,
    /// Size aim for the image (KiB).
    pub aim_kib: Option<u64>,
    /// Static RAM: data + bss + iram (bytes).
    pub static_ram: Option<u64>,
    /// Heap arena inside the static RAM (bytes).
    pub heap_arena: Option<u64>,
    /// DRAM left for heap and stack (bytes).
    pub heap_stack_room: Option<u64>,
    /// Heap + stack the budget requires (KiB).
    pub need_kib: Option<u64>,
    /// Whether `cargo xtask firmware` printed "size check: ok".
    pub size_check_ok: bool,
}

/// The integer right before `unit` (a whole word) after `from` in `line`.
fn int_before(line: &str, from: &str, unit: &str) -> Option<u64> {
    let rest = &line[line.find(from)? + from.len()..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches([',', ')', ';']) == unit && w[0].parse::<u64>().is_ok())
        .and_then(|w| w[0].parse().ok())
}

/// Parses the text report of `cargo xtask firmware`.
pub fn parse_firmware(t: &str) -> FirmwareSizes {
    let mut f = FirmwareSizes::default();
    for line in t.lines() {
        let l = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if l.starts_with("flash text + rodata") {
            f.flash_text_rodata = int_before(&l, "rodata", "B");
        } else if l.starts_with("image ") {
            f.image = int_before(&l, "image", "B");
            f.slot_kib = int_before(&l, " of ", "KiB");
            f.aim_kib = int_before(&l, "aim <", "KiB");
        } else if l.starts_with("RAM static") {
            f.static_ram = int_before(&l, "static", "B");
            f.heap_arena = l
                .split_once("heap arena")
                .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok());
        } else if l.starts_with("RAM heap + stack room") {
            f.heap_stack_room = int_before(&l, "room", "B");
            f.need_kib = int_before(&l, "need >=", "KiB");
        } else if l.starts_with("firmware size check: ok") {
            f.size_check_ok = true;
        }
    }
    f
}

fn kib(b: u64) -> f64 {
    b as f64 / 1024.0
}

fn firmware_lines(f: &FirmwareSizes) -> Vec<Headline> {
    let b = "`cargo xtask firmware`";
    let orig = "the original firmware is not built in this repository";
    let aim = f.aim_kib.unwrap_or(640);
    let need = f.need_kib.unwrap_or(100);
    vec![
        Line::new(
            "firmware",
            match f.slot_kib {
                Some(s) => format!("Firmware image (OTA slot {s} KiB)"),
                None => "Firmware image (OTA slot)".into(),
            },
            "KiB",
            Better::Lower,
        )
        .ours(f.image.map(kib), absent(b, "image size"))
        .no_baseline(orig)
        .target(format!("< {aim} KiB"), |h| h.ours.map(|x| x < aim as f64))
        .done(),
        Line::new(
            "firmware",
            match f.heap_stack_room {
                Some(r) => format!(
                    "Static RAM, data + bss + iram ({} KiB left for heap + stack)",
                    fmt_num(kib(r))
                ),
                None => "Static RAM, data + bss + iram".into(),
            },
            "KiB",
            Better::Lower,
        )
        .ours(f.static_ram.map(kib), absent(b, "static RAM"))
        .no_baseline(orig)
        .target(format!("leaves ≥ {need} KiB for heap + stack"), |_| {
            f.heap_stack_room.map(|r| r >= need * 1024)
        })
        .done(),
    ]
}

/// Headlines of a bench that produced nothing: every line "not measured".
fn missing_lines(name: &str, why: &str) -> Vec<Headline> {
    let empty = Value::Null;
    let mut lines = match name {
        "metering" => metering_lines(&empty),
        "store" => store_lines(&empty),
        "collect" => collect_lines(&empty),
        "sync" => sync_lines(&empty),
        "firmware" => firmware_lines(&FirmwareSizes::default()),
        _ => Vec::new(),
    };
    for l in &mut lines {
        l.ours = None;
        l.baseline = None;
        l.baseline_text = None;
        l.ours_over_baseline = None;
        l.gain = None;
        l.met = None;
        l.not_measured = Some(why.to_string());
    }
    lines
}

/// The summary lines of all benches.
pub fn headlines(benches: &[BenchOutput]) -> Vec<Headline> {
    let mut out = Vec::new();
    for b in benches {
        let lines = match (&b.outcome, b.name.as_str()) {
            (Outcome::Json(v), "metering") => metering_lines(v),
            (Outcome::Json(v), "store") => store_lines(v),
            (Outcome::Json(v), "collect") => collect_lines(v),
            (Outcome::Json(v), "sync") => sync_lines(v),
            (Outcome::Text(t), "firmware") => firmware_lines(&parse_firmware(t)),
            (Outcome::Missing(why), name) => missing_lines(name, why),
            (_, name) => missing_lines(name, "unexpected output format"),
        };
        out.extend(lines);
    }
    out
}

// ------------------------------------------------------------------ document

fn summary_table(out: &mut String, lines: &[Headline]) {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|h| {
            let ours = match (h.ours, &h.not_measured) {
                (Some(x), _) => with_unit(x, h.unit),
                (None, Some(why)) => format!("not measured: {why}"),
                (None, None) => "not measured".into(),
            };
            let base = match (&h.baseline_text, h.baseline) {
                (Some(t), _) if t.starts_with("not measured") => t.clone(),
                (Some(t), _) => format!("{t} ({})", h.baseline_name),
                (None, Some(x)) => format!("{} ({})", with_unit(x, h.unit), h.baseline_name),
                (None, None) => "—".into(),
            };
            let ratio = match (h.ours_over_baseline, h.gain) {
                (Some(_), Some(g)) if h.better == Better::Higher => {
                    format!("{} {}", fmt_gain(g), h.gain_word)
                }
                (Some(r), Some(g)) => format!("{} ({} {})", fmt_num(r), fmt_gain(g), h.gain_word),
                (Some(r), None) => fmt_num(r),
                (None, Some(g)) => format!("{} {}", fmt_gain(g), h.gain_word),
                (None, None) => "—".into(),
            };
            vec![
                format!("{}: {}", h.bench, h.what),
                ours,
                base,
                ratio,
                h.target.clone().unwrap_or_else(|| "—".into()),
                yes_no(h.met).into(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "figure",
            "ours",
            "baseline (same run)",
            "ours / baseline",
            "target",
            "met?",
        ],
        &rows,
    );
}

fn not_measured(out: &mut String, why: &str) {
    let _ = writeln!(out, "**Not measured** in this run: {why}\n");
}

fn metering_section(out: &mut String, m: &Value, plot: &PlotNote) {
    let _ = writeln!(
        out,
        "**How measured.** `meter-bench` feeds the same generated ADC sample stream to \
         our integer engine and to a faithful f32 port of the original's EmonLib \
         `calcVI`, sampling in its burst pattern, and judges both against the \
         generator's analytic truth (never against the code under test). {} Cost: \
         both per-sample paths are built for riscv32imc into one bare-metal image \
         and run under QEMU with exact instruction counting (`-icount shift=0`, \
         `minstret`); the same input table for both; net = gross minus the empty-call \
         loop overhead.\n",
        text(m, "/accuracy/setup").unwrap_or("")
    );
    // Worst errors by region.
    let s = "/accuracy/summary";
    let region = |label: &str, key: &str, target: &str| {
        let o = num(m, &format!("{s}/{key}_ours_max_pct"));
        let b = num(m, &format!("{s}/{key}_baseline_max_pct"));
        vec![
            label.to_string(),
            o.map_or("not measured".into(), fmt_num),
            b.map_or("not measured".into(), fmt_num),
            match (o, b) {
                (Some(o), Some(b)) if o > 0.0 => fmt_gain(b / o),
                _ => "—".into(),
            },
            target.into(),
        ]
    };
    let _ = writeln!(
        out,
        "#### Real-power error, worst |error| % over the grid\n"
    );
    table(
        out,
        &["region", "ours", "calcVI", "calcVI / ours", "target (ours)"],
        &[
            region("PF 1, 10–120 % of rating", "pf1_10_120", "≤ 0.5 %"),
            region("5 % of rating or PF 0.5", "low_or_pf05", "≤ 1 %"),
            region(
                "whole grid (45–55 Hz, all PFs, with/without harmonics)",
                "all",
                "—",
            ),
        ],
    );
    if let (Some(t), Some(n)) = (
        num(m, &format!("{s}/targeted_points")),
        num(m, &format!("{s}/ours_points_meeting_target")),
    ) {
        let _ = writeln!(
            out,
            "Ours meets its target at {} of {} targeted grid points.\n",
            fmt_num(n),
            fmt_num(t)
        );
    }
    // Error against load.
    let _ = writeln!(out, "#### Error against load\n");
    plot.embed(out, "Real-power error against load, ours and calcVI");
    let points = metering_points(m);
    if !points.is_empty() {
        let pfs = ["1", "0.5 lag", "0.8 lead"];
        let mut loads: Vec<f64> = points.iter().map(|p| p.load_pct).collect();
        loads.sort_by(f64::total_cmp);
        loads.dedup();
        let mut freqs: Vec<f64> = points.iter().map(|p| p.frequency_hz).collect();
        freqs.sort_by(f64::total_cmp);
        freqs.dedup();
        let curves: Vec<[Vec<(f64, f64)>; 2]> = pfs
            .iter()
            .map(|pf| {
                [
                    plot::worst_by_load(&points, pf, |p| p.ours_err_pct),
                    plot::worst_by_load(&points, pf, |p| p.baseline_err_pct),
                ]
            })
            .collect();
        let body: Vec<Vec<String>> = loads
            .iter()
            .map(|&l| {
                let mut row = vec![format!("{} %", fmt_plain(l))];
                for c in curves.iter().flatten() {
                    row.push(
                        c.iter()
                            .find(|(x, _)| *x == l)
                            .map_or("—".into(), |(_, e)| fmt_num(*e)),
                    );
                }
                row
            })
            .collect();
        let _ = writeln!(
            out,
            "Worst |error| % over {} Hz, without harmonics ({}):\n",
            freqs
                .iter()
                .map(|f| fmt_num(*f))
                .collect::<Vec<_>>()
                .join(", "),
            if m.pointer("/accuracy/error_vs_load").is_some() {
                "the error-vs-load sweep, as plotted"
            } else {
                "the grid"
            }
        );
        table(
            out,
            &[
                "load",
                "ours PF 1",
                "calcVI PF 1",
                "ours PF 0.5 lag",
                "calcVI PF 0.5 lag",
                "ours PF 0.8 lead",
                "calcVI PF 0.8 lead",
            ],
            &body,
        );
    }
    // Energy.
    let e = "/accuracy/energy_hour";
    if m.pointer(e).is_some() {
        let g = |k: &str| num(m, &format!("{e}/{k}"));
        let wh = |x: Option<f64>| x.map_or("—".into(), fmt_num);
        let er = |x: Option<f64>| x.map_or("—".into(), fmt_err);
        let _ = writeln!(
            out,
            "#### Energy over a 1-hour varying load\n\n\
             Seed {}, {} load segments, 50 Hz with harmonics; ours from its exact energy \
             registers, calcVI extrapolating power × elapsed time from its bursts.\n",
            g("seed").map_or("?".into(), fmt_num),
            g("segments").map_or("?".into(), fmt_num)
        );
        table(
            out,
            &[
                "",
                "net Wh",
                "net error %",
                "import error %",
                "export error %",
            ],
            &[
                vec![
                    "truth (analytic)".into(),
                    wh(g("truth_net_wh")),
                    "".into(),
                    "".into(),
                    "".into(),
                ],
                vec![
                    "ours".into(),
                    wh(g("ours_net_wh")),
                    er(g("ours_net_err_pct")),
                    er(g("ours_import_err_pct")),
                    er(g("ours_export_err_pct")),
                ],
                vec![
                    "calcVI, 1 s burst every 5 s".into(),
                    wh(g("baseline_5s_net_wh")),
                    er(g("baseline_5s_err_pct")),
                    "—".into(),
                    "—".into(),
                ],
                vec![
                    "calcVI as shipped, 1 burst per hour".into(),
                    wh(g("baseline_hourly_net_wh")),
                    er(g("baseline_hourly_err_pct")),
                    "—".into(),
                    "—".into(),
                ],
            ],
        );
    }
    // Cost.
    let _ = writeln!(out, "#### Cost on the chip's instruction set\n");
    match m.pointer("/cost/profiles").and_then(Value::as_array) {
        Some(profiles) if !profiles.is_empty() => {
            let mut rows = Vec::new();
            for p in profiles {
                let name = format!(
                    "{} (opt-level {})",
                    text(p, "/profile").unwrap_or("?"),
                    text(p, "/opt_level").unwrap_or("?")
                );
                for (label, key) in [("1 V + 1 CT", "1v1ct"), ("1 V + 3 CT", "1v3ct")] {
                    let o = num(p, &format!("/net/ours_{key}"));
                    let b = num(p, &format!("/net/baseline_{key}"));
                    rows.push(vec![
                        name.clone(),
                        label.into(),
                        o.map_or("—".into(), fmt_num),
                        b.map_or("—".into(), fmt_num),
                        match (o, b) {
                            (Some(o), Some(b)) if b > 0.0 => fmt_num(o / b),
                            _ => "—".into(),
                        },
                        if key == "1v3ct" {
                            num(p, "/cpu_share_1v3ct_pct")
                                .map_or("—".into(), |c| format!("{} %", fmt_num(c)))
                        } else {
                            "".into()
                        },
                    ]);
                }
            }
            table(
                out,
                &[
                    "profile",
                    "channels",
                    "ours instr/set",
                    "calcVI instr/set",
                    "ours / calcVI (target ≤ 0.2)",
                    "CPU share at 4 kS/s, 160 MHz (target ≤ 2 %)",
                ],
                &rows,
            );
            if let Some(note) = text(m, "/cost/assumptions/note") {
                let _ = writeln!(out, "{note}.\n");
            }
        }
        _ => not_measured(
            out,
            "the cost section is absent from the meter-bench output",
        ),
    }
    match m
        .pointer("/cost/soft_float_check_passed")
        .and_then(Value::as_bool)
    {
        Some(ok) => {
            let _ = writeln!(
                out,
                "Soft-float check (llvm-objdump call graph of the opt-level \"s\" image): \
                 the per-sample path calls {} soft-float routine — **{}**.\n",
                if ok { "no" } else { "a" },
                if ok { "passed" } else { "FAILED" }
            );
        }
        None => not_measured(
            out,
            "the soft-float check is absent from the meter-bench output",
        ),
    }
    // Full grid, folded.
    if let Some(rows) = m.pointer("/accuracy/rows").and_then(Value::as_array) {
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    num(r, "/frequency_hz").map_or("—".into(), fmt_num),
                    text(r, "/pf").unwrap_or("—").into(),
                    num(r, "/load_pct").map_or("—".into(), fmt_num),
                    match r.get("harmonics").and_then(Value::as_bool) {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => "—".into(),
                    },
                    num(r, "/truth_w").map_or("—".into(), fmt_num),
                    num(r, "/ours_err_pct").map_or("—".into(), fmt_err),
                    num(r, "/baseline_err_pct").map_or("—".into(), fmt_err),
                    num(r, "/baseline_worst_burst_pct").map_or("—".into(), fmt_err),
                    match (
                        num(r, "/target_pct"),
                        r.get("ours_meets_target").and_then(Value::as_bool),
                    ) {
                        (Some(t), Some(ok)) => format!(
                            "≤ {} %: {}",
                            fmt_plain(t),
                            if ok { "yes" } else { "**no**" }
                        ),
                        _ => "—".into(),
                    },
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "<details><summary>The whole accuracy grid ({} points)</summary>\n",
            rows.len()
        );
        table(
            out,
            &[
                "Hz",
                "PF",
                "load %",
                "harmonics",
                "truth W",
                "ours error %",
                "calcVI error %",
                "calcVI worst burst %",
                "target (ours)",
            ],
            &body,
        );
        let _ = writeln!(out, "</details>\n");
    }
}

fn store_section(out: &mut String, s: &Value, plot: &PlotNote) {
    let w = |k: &str| num(s, &format!("/workload/{k}")).map_or("?".into(), fmt_num);
    let _ = writeln!(
        out,
        "**How measured.** `store-bench` runs the same workload — {} V + {} CT, {}-second \
         intervals from a deterministic household profile simulated per second — on the same \
         emulated NOR flash region of {} bytes (4 KiB sectors, NOR rules enforced) for our \
         store and for the original firmware's layout (30-byte records per CT appended to 4 KiB \
         shard files on LittleFS through the `littlefs2` crate, wear levelling on). Capacity: \
         append until full. Wear and write amplification: {} days of steady state with a daily \
         collection (ours acks, the original deletes its files as its `/reset` did). Survival: \
         {} random power cuts (the cut word or sector is left as a random mix of old and new \
         bits), remounting after each and checking every record whose append had returned.\n",
        w("voltages"),
        w("circuits"),
        w("interval_s"),
        w("region_bytes"),
        w("days_simulated"),
        w("cuts"),
    );
    let (o, l) = store_rows(s);
    let cellf = |r: Option<&Value>, k: &str| {
        r.and_then(|r| num(r, &format!("/{k}")))
            .map_or("—".into(), fmt_num)
    };
    let ratio = |k: &str| match (
        o.and_then(|r| num(r, &format!("/{k}"))),
        l.and_then(|r| num(r, &format!("/{k}"))),
    ) {
        (Some(a), Some(b)) if b != 0.0 => fmt_num(a / b),
        _ => "—".into(),
    };
    let spread_l = l.map_or("—".into(), |r| match num(r, "/erase_spread") {
        Some(x) => fmt_num(x),
        None => "∞".into(),
    });
    let rows = vec![
        vec![
            "bytes per interval (all overheads)".into(),
            cellf(o, "bytes_per_interval"),
            cellf(l, "bytes_per_interval"),
            ratio("bytes_per_interval"),
            "—".into(),
        ],
        vec![
            "days of data in the region".into(),
            cellf(o, "days_in_region"),
            cellf(l, "days_in_region"),
            ratio("days_in_region"),
            "≥ 60 (aim 90)".into(),
        ],
        vec![
            "write amplification".into(),
            cellf(o, "write_amplification"),
            cellf(l, "write_amplification"),
            ratio("write_amplification"),
            "≤ 1.3".into(),
        ],
        vec![
            "sector erases per day".into(),
            cellf(o, "erases_per_day"),
            cellf(l, "erases_per_day"),
            ratio("erases_per_day"),
            "—".into(),
        ],
        vec![
            "erase count min / max (log sectors)".into(),
            format!("{} / {}", cellf(o, "erase_min"), cellf(o, "erase_max")),
            format!("{} / {}", cellf(l, "erase_min"), cellf(l, "erase_max")),
            "—".into(),
            "—".into(),
        ],
        vec![
            "erase spread max/min".into(),
            cellf(o, "erase_spread"),
            spread_l,
            "—".into(),
            "≤ 2".into(),
        ],
        vec![
            "committed records lost / power cuts".into(),
            format!("{} / {}", cellf(o, "records_lost"), cellf(o, "cuts")),
            format!("{} / {}", cellf(l, "records_lost"), cellf(l, "cuts")),
            "—".into(),
            "0 lost".into(),
        ],
        vec![
            "reformats needed after a cut".into(),
            "0 (the bench stops if a mount fails)".into(),
            cellf(l, "formats_after_cut"),
            "—".into(),
            "—".into(),
        ],
        vec![
            "mount of a full region, flash bytes read".into(),
            cellf(o, "mount_bytes_read_full"),
            "—".into(),
            "—".into(),
            "bounded".into(),
        ],
        vec![
            "RAM (bytes)".into(),
            cellf(o, "ram_bytes"),
            "—".into(),
            "—".into(),
            "< 8 KiB".into(),
        ],
    ];
    table(
        out,
        &[
            "figure",
            "ours",
            "original on littlefs2",
            "ours / original",
            "target",
        ],
        &rows,
    );
    let _ = writeln!(out, "#### Flash wear per sector\n");
    plot.embed(out, "Erase count per sector, ours and littlefs2");
}

fn collect_section(out: &mut String, c: &Value) {
    let _ = writeln!(
        out,
        "**How measured.** `collect-bench` writes a {}-day backlog of {}-second 1 V + 3 CT \
         records with the real store into the flash image of a real simulated device (the \
         device core and its HTTP router on loopback), then the collector empties it into a \
         fresh SQLite database (WAL, `synchronous=FULL`, ack after each commit), {} times; \
         the median run is reported. The baseline is the original's protocol in the same run: \
         one `GET` returning every interval as raw 30-byte records per CT, served from memory \
         (which favours it), then one `INSERT` per row in autocommit mode as the original app \
         did, with `synchronous=FULL` (same durability as ours; when marked extrapolated, only \
         the first rows were timed and the insert time scaled linearly to all rows) and \
         `synchronous=NORMAL` (not durable on power loss). Wire bytes are HTTP body bytes.\n",
        num(c, "/days").map_or("?".into(), fmt_num),
        num(c, "/interval_s").map_or("?".into(), fmt_num),
        c.pointer("/ours/runs_s")
            .and_then(Value::as_array)
            .map_or("?".into(), |r| r.len().to_string()),
    );
    let ours_s = num(c, "/ours/seconds");
    let mut rows = vec![vec![
        "ours (collector, FULL)".into(),
        ours_s.map_or("—".into(), fmt_num),
        num(c, "/ours/wire_bytes").map_or("—".into(), fmt_num),
        num(c, "/ours/bytes_per_record").map_or("—".into(), fmt_num),
        num(c, "/ours/records_per_s").map_or("—".into(), fmt_num),
        "1".into(),
    ]];
    for sync in ["FULL", "NORMAL"] {
        if let Some(b) = collect_baseline(c, sync) {
            let extra = match b.get("extrapolated").and_then(Value::as_bool) {
                Some(true) => format!(
                    ", extrapolated from {} of {} rows",
                    num(b, "/rows_inserted").map_or("?".into(), fmt_num),
                    num(b, "/rows").map_or("?".into(), fmt_num)
                ),
                _ => String::new(),
            };
            let s = num(b, "/seconds");
            rows.push(vec![
                format!("original protocol, {sync}{extra}"),
                s.map_or("—".into(), fmt_num),
                num(b, "/wire_bytes").map_or("—".into(), fmt_num),
                num(b, "/bytes_per_record").map_or("—".into(), fmt_num),
                num(b, "/records_per_s").map_or("—".into(), fmt_num),
                match (s, ours_s) {
                    (Some(s), Some(o)) if o > 0.0 => fmt_num(s / o),
                    _ => "—".into(),
                },
            ]);
        }
    }
    table(
        out,
        &[
            "way",
            "seconds",
            "wire bytes",
            "bytes/record",
            "records/s",
            "time / ours",
        ],
        &rows,
    );
    if let Some(runs) = c.pointer("/ours/runs_s").and_then(Value::as_array) {
        let runs: Vec<String> = runs.iter().filter_map(Value::as_f64).map(fmt_num).collect();
        let _ = writeln!(
            out,
            "Our runs took {} s; target < 2 s for the 30-day backlog. Collector CPU in the \
             median run: {} s.\n",
            runs.join(", "),
            num(c, "/ours/collector_cpu_s").map_or("—".into(), fmt_num)
        );
    }
}

fn sync_section(out: &mut String, y: &Value) {
    let _ = writeln!(
        out,
        "**How measured.** `sync-bench` fills a collector database with {} devices × {} \
         records (a record = one interval of one device with all its keys, 1 V + 3 CT) and \
         sends them to the ThingsBoard mock over loopback: this sync engine over HTTP and over \
         MQTT (through a mosquitto on a loopback port), and the original app's way (one \
         unbatched POST per device with the whole dump as one JSON array, one point per CT), \
         in the same run. The mock runs in a child process, so the client's CPU time is \
         measured alone and the mock's separately; records per client CPU-second does not \
         depend on other load on a shared machine. Wall-clock records/s is the median of {} \
         runs.\n",
        num(y, "/devices").map_or("?".into(), fmt_num),
        num(y, "/records_per_device").map_or("?".into(), fmt_num),
        num(y, "/runs").map_or("?".into(), fmt_num),
    );
    let Some(results) = y.get("results").and_then(Value::as_array) else {
        not_measured(out, "no `results` in the sync-bench output");
        return;
    };
    let orig = sync_row(y, "original").and_then(|r| num(r, "/records_per_s"));
    let f = |r: &Value, k: &str| num(r, &format!("/{k}")).map_or("—".into(), fmt_num);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let rps = num(r, "/records_per_s");
            vec![
                text(r, "/what").unwrap_or("?").into(),
                f(r, "records"),
                f(r, "seconds"),
                rps.map_or("—".into(), fmt_num),
                f(r, "client_cpu_seconds"),
                f(r, "records_per_client_cpu_s"),
                f(r, "server_cpu_seconds"),
                match (rps, orig) {
                    (Some(a), Some(b)) if b > 0.0 => fmt_num(a / b),
                    _ => "—".into(),
                },
            ]
        })
        .collect();
    table(
        out,
        &[
            "way",
            "records",
            "seconds",
            "records/s",
            "client CPU s",
            "records per client CPU-s",
            "mock CPU s",
            "records/s vs original",
        ],
        &rows,
    );
    let _ = writeln!(out, "Target: ≥ 50,000 records/s over HTTP.\n");
}

fn firmware_section(out: &mut String, f: &FirmwareSizes) {
    let _ = writeln!(
        out,
        "**How measured.** `cargo xtask firmware` builds the ESP32-C3 release image \
         (riscv32imc-unknown-none-elf), reads section sizes with `llvm-size` and converts the \
         ELF with esptool; static RAM is data + bss + iram, and the room left for heap and \
         stack is the DRAM that static data does not take. The original firmware is not built \
         in this repository, so there is no baseline.\n"
    );
    let k = |b: Option<u64>| {
        b.map_or("not measured".into(), |b| {
            format!("{} KiB", fmt_num(kib(b)))
        })
    };
    let rows = vec![
        vec![
            "flash: text + rodata".into(),
            k(f.flash_text_rodata),
            "—".into(),
            "—".into(),
        ],
        vec![
            "image (what goes in the OTA slot)".into(),
            k(f.image),
            format!(
                "< {} KiB aim; ≤ {} KiB slot",
                f.aim_kib.unwrap_or(640),
                f.slot_kib.unwrap_or(1024)
            ),
            yes_no(f.image.map(|i| i < f.aim_kib.unwrap_or(640) * 1024)).into(),
        ],
        vec![
            "static RAM (data + bss + iram)".into(),
            k(f.static_ram),
            "—".into(),
            "—".into(),
        ],
        vec![
            "of which the heap arena".into(),
            k(f.heap_arena),
            "—".into(),
            "—".into(),
        ],
        vec![
            "DRAM left for heap + stack".into(),
            k(f.heap_stack_room),
            format!("≥ {} KiB", f.need_kib.unwrap_or(100)),
            yes_no(
                f.heap_stack_room
                    .map(|r| r >= f.need_kib.unwrap_or(100) * 1024),
            )
            .into(),
        ],
    ];
    table(out, &["figure", "size", "budget", "met?"], &rows);
    let _ = writeln!(
        out,
        "`cargo xtask firmware` size check (image fits the slot, heap + stack room kept): {}.\n",
        if f.size_check_ok { "ok" } else { "**not ok**" }
    );
}

/// Whether a plot was drawn, to embed or explain.
struct PlotNote {
    file: &'static str,
    result: Option<Result<(), String>>,
}

impl PlotNote {
    fn embed(&self, out: &mut String, alt: &str) {
        match &self.result {
            Some(Ok(())) => {
                let _ = writeln!(out, "![{alt}]({})\n", self.file);
            }
            Some(Err(why)) => {
                let _ = writeln!(out, "*Plot not drawn: {why}*\n");
            }
            None => {
                let _ = writeln!(out, "*Plot not drawn: no plot directory given.*\n");
            }
        }
    }
}

/// Sweep points for the metering plot: the finer `error_vs_load` sweep if
/// the bench wrote one, else the grid without harmonics.
fn metering_points(m: &Value) -> Vec<SweepPoint> {
    let from = m
        .pointer("/accuracy/error_vs_load/points")
        .or_else(|| m.pointer("/accuracy/rows"))
        .and_then(Value::as_array);
    from.map(|rows| {
        rows.iter()
            .filter(|r| r.get("harmonics").and_then(Value::as_bool) != Some(true))
            .filter_map(|r| {
                Some(SweepPoint {
                    pf: text(r, "/pf")?.to_string(),
                    frequency_hz: num(r, "/frequency_hz").unwrap_or(50.0),
                    load_pct: num(r, "/load_pct")?,
                    ours_err_pct: num(r, "/ours_err_pct"),
                    baseline_err_pct: num(r, "/baseline_err_pct"),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

fn wear_series(s: &Value) -> Option<(WearSeries, WearSeries)> {
    let (o, l) = store_rows(s);
    let counts = |r: Option<&Value>| -> Option<Vec<u32>> {
        r?.get("erase_counts")?
            .as_array()?
            .iter()
            .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect()
    };
    Some((
        WearSeries {
            label: "ours".into(),
            counts: counts(o)?,
            reserved: o
                .and_then(|r| num(r, "/state_area_sectors"))
                .map_or(0, |n| n as usize),
        },
        WearSeries {
            label: "original layout on littlefs2".into(),
            counts: counts(l)?,
            reserved: 0,
        },
    ))
}

/// Renders the document; plots go to `plot_dir` (the Markdown refers to them
/// by file name, so put the document in the same directory).
pub fn render(run: &RunInfo, benches: &[BenchOutput], plot_dir: Option<&Path>) -> Rendered {
    let lines = headlines(benches);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\n\
         <!-- Generated by `cargo xtask bench` (bench-report); do not edit by hand. -->\n\n\
         | run | |\n|---|---|\n| date | {} |\n| machine | {} |\n| commit | {} |\n\n\
         Every figure below comes from this one run: each bench and its baseline ran in the \
         same `cargo xtask bench` invocation on this machine, and every ratio divides two \
         figures of this run. Nothing is carried over from earlier runs; a bench or figure \
         that did not run says \"not measured\" and why.\n",
        cell(&run.date),
        cell(&run.machine),
        cell(&run.commit)
    );
    let _ = writeln!(out, "## Summary\n");
    summary_table(&mut out, &lines);
    let _ = writeln!(
        out,
        "*ours / baseline* is the plain quotient of the two figures; the factor (in brackets \
         where the quotient is below 1) says how many times better ours is in the figure's own \
         direction.\n"
    );

    let mut plots = Vec::new();
    let mut firmware = None;
    let titles = [
        ("metering", "Metering: accuracy and cost"),
        ("store", "Store: density, wear and power cuts"),
        ("collect", "Collect: emptying a device's backlog"),
        ("sync", "Sync to ThingsBoard"),
        ("firmware", "Firmware: image size and static RAM"),
    ];
    for b in benches {
        let title = titles
            .iter()
            .find(|(n, _)| *n == b.name)
            .map_or(b.name.as_str(), |(_, t)| t);
        let _ = writeln!(out, "## {title}\n");
        match (&b.outcome, b.name.as_str()) {
            (Outcome::Json(m), "metering") => {
                let note = draw(plot_dir, METERING_PLOT, &mut plots, |p| {
                    plot_metering_error(p, &metering_points(m))
                });
                metering_section(&mut out, m, &note);
            }
            (Outcome::Json(s), "store") => {
                let note = draw(plot_dir, STORE_PLOT, &mut plots, |p| match wear_series(s) {
                    Some((o, l)) => plot_store_wear(p, &o, &l),
                    None => Err(PlotError::NoData(
                        "the store-bench output has no `erase_counts`".into(),
                    )),
                });
                store_section(&mut out, s, &note);
            }
            (Outcome::Json(c), "collect") => collect_section(&mut out, c),
            (Outcome::Json(y), "sync") => sync_section(&mut out, y),
            (Outcome::Text(t), "firmware") => {
                let f = parse_firmware(t);
                firmware_section(&mut out, &f);
                firmware = Some(f);
            }
            (Outcome::Missing(why), _) => not_measured(&mut out, why),
            (Outcome::Json(_) | Outcome::Text(_), _) => {
                not_measured(&mut out, "the renderer does not know this bench's output");
            }
        }
    }
    Rendered {
        markdown: out,
        headlines: lines,
        plots,
        firmware,
    }
}

fn draw(
    dir: Option<&Path>,
    file: &'static str,
    plots: &mut Vec<(PathBuf, Result<(), String>)>,
    f: impl FnOnce(&Path) -> Result<(), PlotError>,
) -> PlotNote {
    let Some(dir) = dir else {
        return PlotNote { file, result: None };
    };
    let path = dir.join(file);
    let result = f(&path).map_err(|e| e.to_string());
    plots.push((path, result.clone()));
    PlotNote {
        file,
        result: Some(result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run() -> RunInfo {
        RunInfo {
            machine: "test CPU, 2 cores".into(),
            date: "2026-01-01 00:00 UTC".into(),
            commit: "abc1234".into(),
        }
    }

    fn metering() -> Value {
        let mut rows = Vec::new();
        let mut sweep = Vec::new();
        for (pf, k) in [("1", 1.0), ("0.5 lag", 3.0), ("0.8 lead", 2.0)] {
            for load in [5.0, 10.0, 50.0, 100.0, 120.0] {
                for f in [45.0, 50.0, 55.0] {
                    rows.push(json!({"frequency_hz": f, "pf": pf, "load_pct": load, "harmonics": false,
                        "truth_w": 2300.0 * load / 10.0, "ours_err_pct": 0.001 * k * (f - 49.0),
                        "baseline_err_pct": -0.01 * k * (f - 49.0), "baseline_worst_burst_pct": 0.02,
                        "target_pct": 1.0, "ours_meets_target": true}));
                }
            }
            for load in [1.0, 2.0, 5.0, 10.0, 50.0, 120.0] {
                sweep.push(json!({"frequency_hz": 50.0, "pf": pf, "load_pct": load,
                    "ours_err_pct": 0.05 / load, "baseline_err_pct": -0.5 / load}));
            }
        }
        json!({
            "accuracy": {
                "setup": "synthetic",
                "rows": rows,
                "summary": {"pf1_10_120_ours_max_pct": 0.02, "pf1_10_120_baseline_max_pct": 0.08,
                    "low_or_pf05_ours_max_pct": 0.04, "low_or_pf05_baseline_max_pct": 0.44,
                    "all_ours_max_pct": 0.04, "all_baseline_max_pct": 0.44,
                    "targeted_points": 10, "ours_points_meeting_target": 10},
                "energy_hour": {"seed": 7, "segments": 66, "truth_net_wh": 4410.8,
                    "ours_net_wh": 4410.8, "ours_import_err_pct": -0.001, "ours_export_err_pct": -0.0127,
                    "ours_net_err_pct": 0.00002, "baseline_5s_net_wh": 4434.0, "baseline_5s_err_pct": 0.526,
                    "baseline_hourly_net_wh": 1297.0, "baseline_hourly_err_pct": -70.6},
                "error_vs_load": {"points": sweep}
            },
            "cost": {
                "assumptions": {"note": "assume 1 IPC"},
                "profiles": [
                    {"profile": "release-o3", "opt_level": "3", "net": {"ours_1v1ct": 100.0, "baseline_1v1ct": 1000.0}},
                    {"profile": "release", "opt_level": "s",
                     "net": {"ours_1v1ct": 120.0, "baseline_1v1ct": 1312.0, "ours_1v3ct": 253.0, "baseline_1v3ct": 1000.0},
                     "cpu_share_1v3ct_pct": 0.65, "baseline_cpu_share_1v3ct_pct": 9.87}
                ],
                "soft_float_check_passed": true
            }
        })
    }

    fn store() -> Value {
        let ours: Vec<u32> = (0..480)
            .map(|i| if i < 2 { 1 } else { 2 + (i % 2) })
            .collect();
        let lfs: Vec<u32> = (0..480)
            .map(|i| if i < 5 { 2000 - i * 100 } else { i % 7 })
            .collect();
        json!({
            "workload": {"voltages": 1, "circuits": 3, "interval_s": 60, "region_bytes": 1966080,
                "days_simulated": 180, "cuts": 1000},
            "results": [
                {"name": "ofmon store", "bytes_per_interval": 16.61, "days_in_region": 82.2,
                 "write_amplification": 1.012, "erases_per_day": 5.83, "erase_spread": 1.5,
                 "erase_min": 2, "erase_max": 3, "records_lost": 0, "cuts": 1000,
                 "ram_bytes": 2992, "state_area_sectors": 2, "erase_counts": ours},
                {"name": "original (littlefs, 30 B/CT)", "bytes_per_interval": 94.47, "days_in_region": 14.5,
                 "write_amplification": 68.909, "erases_per_day": 4110.0, "erase_spread": null,
                 "erase_min": 0, "erase_max": 2000, "records_lost": 0, "cuts": 1000,
                 "formats_after_cut": 0, "erase_counts": lfs}
            ]
        })
    }

    const FIRMWARE: &str = "\
firmware ELF: /x/ofmon-firmware
  flash  text + rodata      759984 B (742.2 KiB)  [text 665368 B, rodata 94616 B]
  flash  RAM init data       56648 B (55.3 KiB)
  image  ofmon-firmware.bin    816736 B (797.6 KiB of 1024 KiB slot, aim < 640 KiB)
  RAM    static (data+bss+iram)    207584 B (202.7 KiB), of which heap arena 73728 B
  RAM    heap + stack room    186656 B (182.3 KiB of 313 KiB DRAM; need >= 100 KiB)
firmware size check: ok
";

    fn line<'a>(md: &'a str, start: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in\n{md}"))
    }

    #[test]
    fn numbers_are_formatted_by_size() {
        assert_eq!(fmt_num(115_208.15), "115,208");
        assert_eq!(fmt_num(1311.8), "1312");
        assert_eq!(fmt_num(82.2), "82.2");
        assert_eq!(fmt_num(1.012), "1.01");
        assert_eq!(fmt_num(0.017_828), "0.0178");
        assert_eq!(fmt_num(-70.594), "-70.6");
        assert_eq!(fmt_num(f64::INFINITY), "∞");
        assert_eq!(fmt_err(0.0141), "+0.0141");
        assert_eq!(fmt_gain(780.7), "781×");
        assert_eq!(fmt_gain(4.38), "4.38×");
    }

    #[test]
    fn firmware_text_is_parsed() {
        let f = parse_firmware(FIRMWARE);
        assert_eq!(f.flash_text_rodata, Some(759_984));
        assert_eq!(f.image, Some(816_736));
        assert_eq!(f.slot_kib, Some(1024));
        assert_eq!(f.aim_kib, Some(640));
        assert_eq!(f.static_ram, Some(207_584));
        assert_eq!(f.heap_arena, Some(73_728));
        assert_eq!(f.heap_stack_room, Some(186_656));
        assert_eq!(f.need_kib, Some(100));
        assert!(f.size_check_ok);
        assert_eq!(parse_firmware("garbage\n"), FirmwareSizes::default());
    }

    #[test]
    fn renders_tables_ratios_missing_benches_and_plots() {
        let dir = tempfile::tempdir().unwrap();
        let benches = vec![
            BenchOutput {
                name: "metering".into(),
                outcome: Outcome::Json(metering()),
            },
            BenchOutput {
                name: "store".into(),
                outcome: Outcome::Json(store()),
            },
            BenchOutput {
                name: "collect".into(),
                outcome: Outcome::Missing("package collect-bench does not exist yet".into()),
            },
            // A sync output without the original's row: its baseline is not measured.
            BenchOutput {
                name: "sync".into(),
                outcome: Outcome::Json(json!({"devices": 5, "records_per_device": 20000,
                    "results": [{"what": "http: tbsync", "records": 100000, "seconds": 2.0,
                                 "records_per_s": 40000.0, "records_per_client_cpu_s": 90000.0}]})),
            },
            BenchOutput {
                name: "firmware".into(),
                outcome: Outcome::Text(FIRMWARE.into()),
            },
        ];
        let r = render(&run(), &benches, Some(dir.path()));
        let md = &r.markdown;

        // Machine, date and commit at the top, before the summary.
        let top = &md[..md.find("## Summary").unwrap()];
        assert!(
            top.contains("test CPU, 2 cores")
                && top.contains("2026-01-01")
                && top.contains("abc1234")
        );

        // Summary rows: ours, baseline, ratio (plain quotient and gain), target, met.
        let pf1 = line(md, "| metering: Real-power error, PF 1");
        assert!(
            pf1.contains(
                "| 0.0200 % | 0.0800 % (calcVI port) | 0.250 (4.00× lower) | ≤ 0.5 % | yes |"
            ),
            "{pf1}"
        );
        // The instruction ratio comes from the opt-level "s" profile, not the first one.
        let instr = line(
            md,
            "| metering: Instructions per sample set on rv32imc, 1 V + 1 CT",
        );
        assert!(
            instr.contains(
                "| 120 | 1312 (calcVI port) | 0.0915 (10.9× fewer) | ≤ 1/5 of calcVI | yes |"
            ),
            "{instr}"
        );
        // 1 V + 3 CT: 253 / 1000 > 0.2, so the target is not met.
        let instr3 = line(
            md,
            "| metering: Instructions per sample set on rv32imc, 1 V + 3 CT",
        );
        assert!(instr3.ends_with("| **no** |"), "{instr3}");
        // The energy gain floors our error at 0.01 %: 0.526 / 0.0127.
        let energy = line(md, "| metering: Energy");
        assert!(energy.contains("(41.4× lower)"), "{energy}");
        let days = line(md, "| store: Days of 1-minute");
        assert!(days.contains("| 82.2 days | 14.5 days (original layout on littlefs2) | 5.67× more | ≥ 60 (aim 90) | yes |"), "{days}");
        let spread = line(md, "| store: Erase spread");
        assert!(
            spread.contains("∞ (max 2000, min 0)") && spread.ends_with("| yes |"),
            "{spread}"
        );
        let lost = line(md, "| store: Committed records lost over 1000 power cuts");
        assert!(
            lost.contains("| 0 |") && lost.ends_with("| 0 | yes |"),
            "{lost}"
        );
        // Missing bench: every collect line says why, nothing filled in.
        let collect = line(md, "| collect: Collect");
        assert!(
            collect.contains("not measured: package collect-bench does not exist yet"),
            "{collect}"
        );
        assert!(collect.ends_with("| < 2 s | — |"), "{collect}");
        assert!(md.contains("## Collect: emptying a device's backlog\n\n**Not measured** in this run: package collect-bench does not exist yet"));
        // Sync: ours below target; the original's row is absent, so no ratio.
        let sync = line(md, "| sync: Sync to ThingsBoard");
        assert!(sync.contains("| 40,000 /s | not measured: no original's way figure in the bench output | — | ≥ 50,000 /s | **no** |"), "{sync}");
        let cpu = line(md, "| sync: Sync over HTTP, records per client CPU-second");
        assert!(
            cpu.contains("| 90,000 /s |") && cpu.ends_with("| yes |"),
            "{cpu}"
        );
        // Firmware: no baseline, aim not met, RAM budget met.
        let image = line(md, "| firmware: Firmware image");
        assert!(image.contains("| 798 KiB | not measured: the original firmware is not built in this repository | — | < 640 KiB | **no** |"), "{image}");
        assert!(line(md, "| firmware: Static RAM").ends_with("| yes |"));

        // Sections: hand-made tables, not a dump.
        assert!(
            md.contains("| PF 1, 10–120 % of rating | 0.0200 | 0.0800 | 4.00× | ≤ 0.5 % |"),
            "{md}"
        );
        assert!(
            md.contains("| write amplification | 1.01 | 68.9 | 0.0147 | ≤ 1.3 |"),
            "{md}"
        );
        assert!(
            md.contains("| image (what goes in the OTA slot) | 798 KiB |"),
            "{md}"
        );
        assert!(
            !md.contains("erase_counts"),
            "raw field names leak into the document"
        );

        // Plots: written, non-empty PNGs, embedded by file name.
        assert_eq!(r.plots.len(), 2);
        for (path, res) in &r.plots {
            assert!(res.is_ok(), "{path:?}: {res:?}");
            let bytes = std::fs::read(path).unwrap();
            assert!(bytes.len() > 5000, "{path:?} is {} bytes", bytes.len());
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
        assert!(md.contains(&format!("]({METERING_PLOT})")));
        assert!(md.contains(&format!("]({STORE_PLOT})")));

        // Headlines carry the numbers for --json.
        let h = r
            .headlines
            .iter()
            .find(|h| h.what.starts_with("Write amplification"))
            .unwrap();
        assert_eq!(
            (h.ours, h.baseline, h.met),
            (Some(1.012), Some(68.909), Some(true))
        );
        assert!((h.gain.unwrap() - 68.909 / 1.012).abs() < 1e-9);
    }

    #[test]
    fn missing_figures_are_never_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        // A store output without erase counts and without our row.
        let s = json!({"workload": {}, "results": [{"name": "original (littlefs)", "days_in_region": 14.5}]});
        let r = render(
            &run(),
            &[BenchOutput {
                name: "store".into(),
                outcome: Outcome::Json(s),
            }],
            Some(dir.path()),
        );
        let days = line(&r.markdown, "| store: Days");
        assert!(
            days.contains("not measured: `days_in_region` absent from the store-bench output"),
            "{days}"
        );
        assert!(days.ends_with("| — |"), "{days}");
        assert!(
            r.markdown.contains(
                "*Plot not drawn: no data: the store-bench output has no `erase_counts`*"
            )
        );
        assert!(!dir.path().join(STORE_PLOT).exists());
        assert!(
            r.headlines
                .iter()
                .all(|h| h.ours.is_none() && h.met.is_none())
        );
    }
}
