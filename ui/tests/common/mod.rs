//! Shared fixtures for the otc-ui integration tests.
#![allow(dead_code)]

use otc_ui::sink::memory::{MemoryDisplay, MemoryScreen};
use otc_ui::source::scripted::{ScriptedTouch, TouchScript};
use otc_ui::*;
use std::sync::Arc;
use std::time::Duration;

pub struct Rig {
    pub ui: Ui,
    pub screen: MemoryScreen,
    pub script: TouchScript,
    pub clock: FakeClock,
    pub handle: UiHandle,
}

impl Rig {
    pub fn new(w: u32, h: u32) -> Rig {
        let (display, screen) = MemoryDisplay::new(w, h);
        let (touch, script) = ScriptedTouch::new();
        let clock = FakeClock::new();
        let config = UiConfig {
            emulator_marker: false,
            ..UiConfig::default()
        };
        let ui = Ui::new(
            Box::new(display),
            Some(Box::new(touch)),
            Arc::new(clock.clone()),
            config,
        )
        .expect("ui");
        let handle = ui.handle();
        let mut rig = Rig {
            ui,
            screen,
            script,
            clock,
            handle,
        };
        rig.step();
        rig
    }

    /// Handles everything pending and renders.
    pub fn step(&mut self) {
        self.ui.step(Duration::ZERO).expect("step");
    }

    /// Lets `d` pass, one step per 100 ms.
    pub fn advance(&mut self, d: Duration) {
        let tick = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            let t = left.min(tick);
            self.clock.advance(t);
            left -= t;
            self.step();
        }
    }

    pub fn trace(&self) -> ScreenTrace {
        self.ui.trace()
    }

    /// Taps the button `id` from the trace and steps.
    pub fn tap(&mut self, id: &str) {
        let t = self.trace();
        let b = t
            .button(id)
            .unwrap_or_else(|| panic!("no button {id:?} on {}", t.to_json()))
            .clone();
        self.script.tap_button(&b);
        self.step();
    }

    /// Shows a prompt and waits until its buttons are armed.
    pub fn prompt(&mut self, p: Prompt) -> PromptTicket {
        let t = self.handle.show_prompt(p);
        self.step();
        self.advance(Duration::from_millis(500));
        t
    }
}

pub fn home() -> HomeView {
    HomeView {
        owner: "Alice".into(),
        contacts: vec![
            ContactView {
                name: "bob".into(),
                pad_left_bytes: 734_003_200,
                pad_total_bytes: 1_000_000_000,
                messages_left: 5_560_630,
                damaged: false,
            },
            ContactView {
                name: "Carol Jiménez".into(),
                pad_left_bytes: 96_000_000,
                pad_total_bytes: 100_000_000,
                messages_left: 727_272,
                damaged: false,
            },
            ContactView {
                name: "dave".into(),
                pad_left_bytes: 4_200_000,
                pad_total_bytes: 100_000_000,
                messages_left: 31_818,
                damaged: false,
            },
        ],
        link: LinkView {
            up: true,
            address: Some("10.77.0.1".into()),
            loopback: false,
        },
        unseen_alerts: 2,
        ..Default::default()
    }
}

pub fn seal() -> Prompt {
    Prompt::Seal {
        contact: "bob".into(),
        message_bytes: 100,
        cost_bytes: 132,
        pad_left_after: 733_003_068,
        timeout: Duration::from_secs(30),
        client_note: None,
        message: None,
    }
}

pub fn open() -> Prompt {
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
    }
}

pub fn pair() -> Prompt {
    Prompt::Pair {
        contact: "erin".into(),
        pad_bytes: 1_000_000_000,
        fingerprint: "7f3a9c21e0b4d58a6c1f0e9b2d7a4c83".into(),
        timeout: Duration::from_secs(120),
    }
}

pub fn alerts() -> Vec<AlertView> {
    vec![
        AlertView {
            at: "11-22 05:41".into(),
            text: "Replayed package from bob refused (message #41)".into(),
            severe: true,
            unacked: true,
        },
        AlertView {
            at: "11-22 05:12".into(),
            text: "Sealed 100 bytes for bob".into(),
            severe: false,
            unacked: false,
        },
        AlertView {
            at: "11-21 22:03".into(),
            text: "Pad with dave below 5 %".into(),
            severe: false,
            unacked: false,
        },
    ]
}

pub fn about() -> AboutView {
    AboutView {
        software: "otc-device 0.1.0".into(),
        board: "Raspberry Pi 4 Model B Rev 1.5".into(),
        facts: vec![
            ("Status LED".into(), "GPIO 17".into()),
            ("Buttons".into(), "Approve GPIO 5 · Reject GPIO 6".into()),
        ],
    }
}

/// A seal prompt that shows its message (issue 19).
pub fn seal_text(text: &str) -> Prompt {
    let mut p = seal();
    if let Prompt::Seal {
        message,
        message_bytes,
        ..
    } = &mut p
    {
        *message_bytes = text.len() as u64;
        *message = Some(MessageView::Text(text.into()));
    }
    p
}
