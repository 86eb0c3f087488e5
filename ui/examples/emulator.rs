//! The UI with made-up data on the emulator page, for trying the screens by
//! hand:
//!
//!     cargo run -p otc-ui --features emulator --example emulator [-- 127.0.0.1:8088 [480x320]]
//!
//! Open the printed address. The demo cycles through a seal prompt, an open
//! prompt with warnings, a pairing prompt and pad-creation progress, and
//! prints each decision.

use otc_ui::emulator::Emulator;
use otc_ui::sink::memory::MemoryDisplay;
use otc_ui::source::scripted::ScriptedTouch;
use otc_ui::*;
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8088".into());
    let (w, h) = match args.next() {
        Some(s) => {
            let (w, h) = s.split_once('x').ok_or("size must look like 800x480")?;
            (w.parse()?, h.parse()?)
        }
        None => (800, 480),
    };
    let (display, screen) = MemoryDisplay::new(w, h);
    let (touch, script) = ScriptedTouch::new();
    let ui = Ui::spawn(
        Box::new(display),
        Some(Box::new(touch)),
        Arc::new(SystemClock::new()),
        UiConfig::default(),
    )?;
    let emu = Emulator::start(addr.parse()?, screen, script, ui.trace.clone())?;
    println!("emulator page: {}", emu.url());
    show_home(&ui);
    let prompts = sample_prompts();
    loop {
        for p in prompts.iter().cloned() {
            std::thread::sleep(Duration::from_secs(4));
            let d = ui.handle.show_prompt(p).wait();
            println!("decision: {d:?}");
            ui.handle.toast(match d {
                Decision::Approve => Toast::success("Approved"),
                Decision::Reject => Toast::info("Rejected"),
                _ => Toast::error(format!("{d:?}")),
            });
        }
        std::thread::sleep(Duration::from_secs(4));
        show_progress(&ui);
        if ui.is_finished() {
            return Ok(());
        }
    }
}

/// The home screen with three contacts and one unseen alert.
fn show_home(ui: &UiThread) {
    let contact = |name: &str, left: u64, total: u64| ContactView {
        name: name.into(),
        pad_left_bytes: left,
        pad_total_bytes: total,
        messages_left: left / 116,
        damaged: false,
    };
    ui.handle.set_home(HomeView {
        owner: "Alice".into(),
        contacts: vec![
            contact("bob", 734_003_200, 1_000_000_000),
            contact("Carol", 96_000_000, 100_000_000),
            contact("dave", 4_200_000, 100_000_000),
        ],
        link: LinkView {
            up: true,
            address: Some("10.77.0.1".into()),
            loopback: false,
        },
        unseen_alerts: 1,
        ..Default::default()
    });
    ui.handle.set_alerts(vec![AlertView {
        at: "11-22 05:41".into(),
        text: "Replayed package from bob refused (message #41)".into(),
        severe: true,
        unacked: true,
    }]);
}

/// One prompt of each kind: seal, open (with warnings), pairing.
fn sample_prompts() -> [Prompt; 3] {
    [
        Prompt::Seal {
            contact: "bob".into(),
            message_bytes: 100,
            cost_bytes: 116,
            pad_left_after: 733_003_068,
            timeout: Duration::from_secs(30),
            client_note: Some("Re: dinner on Friday".into()),
            message: Some(otc_ui::MessageView::Text(
                "Dinner on Friday at 8? I will bring the wine.".into(),
            )),
        },
        Prompt::Open {
            contact: "bob".into(),
            cost_bytes: 164,
            warnings: vec![
                WarningView::Replay { index: 41 },
                WarningView::Skipped { count: 3 },
            ],
            timeout: Duration::from_secs(30),
            client_note: None,
            for_laptop: true,
        },
        Prompt::Pair {
            contact: "erin".into(),
            pad_bytes: 1_000_000_000,
            fingerprint: "7f3a9c21e0b4d58a6c1f0e9b2d7a4c83".into(),
            timeout: Duration::from_secs(120),
        },
    ]
}

/// Four seconds of a pad being made.
fn show_progress(ui: &UiThread) {
    for i in 0..=20u64 {
        ui.handle.show_progress(ProgressView {
            title: "Creating pad for erin".into(),
            done_bytes: i * 50_000_000,
            total_bytes: 1_000_000_000,
            cancellable: false,
            time_left: None,
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    ui.handle.hide_progress();
}
