//! The dashboard in a real browser: Debian's headless Chromium, driven over
//! the DevTools protocol, against an in-process demo on a free port.
//!
//! Fails (never skips) when Chromium is missing. Writes the screenshots of
//! the README into `docs/` (`dashboard-1280.png`, `dashboard-390.png`,
//! `fleet-1280.png`).
//!
//! `OFMON_DEMO_HISTORY_DAYS` (default 7) sets the demo's history length.

mod cdp;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cdp::Browser;
use ui::demo::{Demo, DemoOptions};

const LONG: Duration = Duration::from_secs(60);

fn docs() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn save(name: &str, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
    assert!(
        png.len() > 20_000,
        "{name} is suspiciously small ({} B)",
        png.len()
    );
    std::fs::write(docs().join(name), png).unwrap();
}

#[test]
fn dashboard_in_headless_chromium() {
    // Fail early and clearly, before the demo spends time on history.
    let browser = Browser::launch();
    let days: f64 = std::env::var("OFMON_DEMO_HISTORY_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(7.0);
    let t = Instant::now();
    let demo = Demo::start(
        DemoOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            history_days: days,
            ..DemoOptions::default()
        },
        &|l| eprintln!("demo: {l}"),
    )
    .unwrap();
    eprintln!(
        "demo up in {:.1} s: {:?}",
        t.elapsed().as_secs_f64(),
        demo.timings
    );
    let base = demo.url();
    let mut page = browser.new_page();
    page.viewport(1280, 900, 1.0, false);

    // ---- fleet: the three devices with their SSIDs
    page.goto(&base);
    page.wait_for(
        "document.querySelectorAll('#fleet-table tbody tr').length === 3",
        LONG,
        "three devices on the fleet page",
    );
    let ssids =
        page.eval("[...document.querySelectorAll('#fleet-table .ssid')].map(a => a.textContent)");
    let mut shown: Vec<String> = ssids
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    shown.sort();
    let mut expected: Vec<String> = demo.devices.iter().map(|d| d.ssid.clone()).collect();
    expected.sort();
    assert_eq!(shown, expected);
    for d in &demo.devices {
        let row = page.eval(&format!(
            "document.querySelector('tr[data-device-id=\"{}\"]').innerText",
            d.id
        ));
        let row = row.as_str().unwrap();
        assert!(row.contains(&d.tb_name), "{row}");
        assert!(row.contains("paired"), "{row}");
        assert!(row.contains(" readings"), "units on pending sync: {row}");
    }
    // Keyboard: the first Tab reaches the skip link, and it is visible then.
    page.eval("document.activeElement && document.activeElement.blur(); window.focus(); true");
    page.press("Tab", "Tab", 9);
    let focused = page.eval("document.activeElement.className + '|' + document.activeElement.getBoundingClientRect().left");
    let focused = focused.as_str().unwrap();
    assert!(focused.starts_with("skip|"), "first Tab focus: {focused}");
    assert!(
        !focused.ends_with("|-999"),
        "skip link visible when focused: {focused}"
    );
    page.eval("document.activeElement.blur(); true");
    std::thread::sleep(Duration::from_millis(300));
    let h = page
        .eval("Math.min(1400, document.documentElement.scrollHeight)")
        .as_u64()
        .unwrap();
    save("fleet-1280.png", &page.screenshot(1280, h as u32));

    // ---- device: the solar home, opened from the fleet page
    let solar = demo
        .devices
        .iter()
        .find(|d| d.role.contains("solar"))
        .unwrap();
    page.eval(&format!(
        "document.querySelector('tr[data-device-id=\"{}\"] a.ssid').click(); true",
        solar.id
    ));
    page.wait_for(
        "window.ofmon.ready && ofmon.charts.power && ofmon.charts.power.data[0].length > 100 \
         && ofmon.charts.energy && ofmon.charts.energy.data[0].length >= 1",
        LONG,
        "power and energy charts with data",
    );
    let drawn = page.eval(
        "({ points: ofmon.charts.power.data[0].length, \
            values: ofmon.charts.power.data[1].filter(v => v !== null).length, \
            negative: ofmon.charts.power.data[1].filter(v => v !== null && v < 0).length, \
            volts: ofmon.charts.voltage.data[1].filter(v => v > 180 && v < 280).length, \
            days: ofmon.charts.energy.data[0].length, \
            exportKwh: ofmon.charts.energy.data[2].reduce((a, b) => a + (b || 0), 0), \
            axes: ['power', 'voltage', 'energy'].flatMap(c => ofmon.charts[c].axes.map(a => a.label)).join('|') })",
    );
    eprintln!("charts: {drawn}");
    assert!(drawn["values"].as_u64().unwrap() > 100, "{drawn}");
    assert!(
        drawn["negative"].as_u64().unwrap() > 0,
        "solar export drawn as negative power: {drawn}"
    );
    assert!(drawn["volts"].as_u64().unwrap() > 100, "{drawn}");
    assert!(drawn["exportKwh"].as_f64().unwrap() > 0.0, "{drawn}");
    let axes = drawn["axes"].as_str().unwrap();
    for unit in [
        "Power (W)",
        "Voltage (V)",
        "Frequency (Hz)",
        "Energy (kWh)",
        "Time (local)",
    ] {
        assert!(axes.contains(unit), "axis label {unit} in {axes}");
    }
    // The canvas really has ink on it (not just data in memory).
    let ink = page.eval(
        "(() => { const c = document.querySelector('#chart-power canvas'); \
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
          let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()",
    );
    assert!(
        ink.as_u64().unwrap() > 2000,
        "power chart pixels drawn: {ink}"
    );
    page.wait_for(
        "document.querySelectorAll('#events li').length > 0",
        LONG,
        "events timeline",
    );

    // Zoom with the keyboard-reachable range buttons: finer buckets.
    let before = page.eval("ofmon.charts.power.data[0][1] - ofmon.charts.power.data[0][0]");
    page.eval(
        "[...document.querySelectorAll('button')].find(b => b.textContent === '6 h').click(); true",
    );
    page.wait_for(
        &format!(
            "ofmon.charts.power.data[0][1] - ofmon.charts.power.data[0][0] < {}",
            before.as_f64().unwrap()
        ),
        LONG,
        "zoomed data",
    );

    // ---- collect with live progress
    page.eval("document.getElementById('collect-btn').click(); true");
    page.wait_for(
        "document.querySelector('.job[data-action=collect]') && \
         document.querySelector('.job[data-action=collect]').dataset.state !== 'running'",
        LONG,
        "collect to finish",
    );
    let job = page.eval(
        "(() => { const j = document.querySelector('.job[data-action=collect]'); \
          const p = j.querySelector('progress'); \
          return { state: j.dataset.state, text: j.innerText, value: p.value, max: p.max }; })()",
    );
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["value"], job["max"], "{job}");
    assert!(
        job["text"].as_str().unwrap().contains("new record"),
        "{job}"
    );
    // ---- sync with live progress: the mock then holds every record.
    page.eval("document.getElementById('sync-btn').click(); true");
    page.wait_for(
        "document.querySelector('.job[data-action=sync]') && \
         document.querySelector('.job[data-action=sync]').dataset.state !== 'running'",
        LONG,
        "sync to finish",
    );
    let sync = page.eval(
        "(() => { const j = document.querySelector('.job[data-action=sync]'); \
          return { state: j.dataset.state, text: j.innerText }; })()",
    );
    assert_eq!(sync["state"], "done", "{sync}");
    assert!(
        sync["text"].as_str().unwrap().contains("record(s) sent"),
        "{sync}"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
    let fleet: serde_json::Value = serde_json::from_str(
        &agent
            .get(format!("{base}api/fleet"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let tb = demo.thingsboard_mock().unwrap();
    for d in fleet["devices"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        let held = tb
            .with_device(name, |m| {
                m.telemetry
                    .values()
                    .flat_map(|t| t.keys().copied())
                    .collect::<std::collections::BTreeSet<i64>>()
                    .len()
            })
            .unwrap();
        assert_eq!(Some(held as u64), d["records"].as_u64(), "{name}: {d}");
        assert_eq!(d["pending_sync"].as_u64(), Some(0), "{d}");
    }
    page.eval(
        "document.querySelectorAll('.job').forEach(j => j.remove()); window.scrollTo(0, 0); true",
    );
    page.eval(
        "[...document.querySelectorAll('button')].find(b => b.textContent === 'All').click(); true",
    );
    // Whole history again (a refresh after the actions may have kept the zoom).
    let all = format!(
        "(ofmon.charts.power.data[0].at(-1) - ofmon.charts.power.data[0][0]) > {}",
        days * 86_400.0 * 0.9
    );
    let t = Instant::now();
    while page.eval(&all).as_bool() != Some(true) && t.elapsed() < LONG {
        std::thread::sleep(Duration::from_millis(500));
        page.eval(
            "[...document.querySelectorAll('button')].find(b => b.textContent === 'All').click(); true",
        );
    }
    page.wait_for(&all, LONG, "the whole history on the chart");
    std::thread::sleep(Duration::from_millis(800));

    // ---- screenshots: 1280 px and 390 px
    let h = page
        .eval("Math.min(2000, document.documentElement.scrollHeight)")
        .as_u64()
        .unwrap();
    save("dashboard-1280.png", &page.screenshot(1280, h as u32));

    page.viewport(390, 844, 2.0, true);
    page.wait_for(
        "ofmon.charts.power.width <= 390",
        LONG,
        "charts resized to the phone width",
    );
    std::thread::sleep(Duration::from_millis(500));
    let overflow = page
        .eval("document.documentElement.scrollWidth")
        .as_u64()
        .unwrap();
    let wide = page.eval(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391) \
         .slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + \
         Math.round(e.getBoundingClientRect().right)).join(', ')",
    );
    assert!(
        overflow <= 390,
        "no horizontal scrolling at 390 px (page is {overflow} px wide; too wide: {wide})"
    );
    let h = page
        .eval("Math.min(2400, document.documentElement.scrollHeight)")
        .as_u64()
        .unwrap();
    save("dashboard-390.png", &page.screenshot(390, h as u32));

    let home = demo.home().to_path_buf();
    demo.stop();
    assert!(!home.exists());
}
