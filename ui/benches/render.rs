//! Rendering speed of the confirm-seal screen at 800x480 in RGB565:
//! a full frame, and the partial repaint of one countdown tick.
//!
//!     cargo bench -p otc-ui --bench render
//!
//! Targets on the development machine: full frame < 8 ms, countdown
//! repaint < 1 ms.

use criterion::{Criterion, criterion_group, criterion_main};
use otc_ui::sink::memory::{MemoryDisplay, MemoryScreen};
use otc_ui::*;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn seal() -> Prompt {
    Prompt::Seal {
        contact: "bob".into(),
        message_bytes: 100,
        cost_bytes: 116,
        pad_left_after: 733_003_068,
        timeout: Duration::from_secs(30),
        client_note: None,
        message: None,
    }
}

fn rig() -> (Ui, UiHandle, FakeClock, MemoryScreen) {
    let (display, screen) = MemoryDisplay::new(800, 480);
    let clock = FakeClock::new();
    let ui = Ui::new(
        Box::new(display),
        None,
        Arc::new(clock.clone()),
        UiConfig {
            emulator_marker: false,
            ..UiConfig::default()
        },
    )
    .expect("ui");
    let handle = ui.handle();
    (ui, handle, clock, screen)
}

fn bench(c: &mut Criterion) {
    let (mut ui, handle, clock, screen) = rig();
    let mut ticket = handle.show_prompt(seal());
    ui.step(Duration::ZERO).unwrap();

    c.bench_function("confirm-seal full frame 800x480 rgb565", |b| {
        b.iter(|| black_box(ui.repaint_all().unwrap()))
    });

    // One countdown tick: the clock moves a second, the countdown text and
    // bar change, only their region is rendered and presented. A prompt
    // lasts 30 ticks; re-posting one (a full redraw) is not timed.
    let mut ticks = 0u32;
    let mut reported = false;
    c.bench_function("confirm-seal countdown tick (partial)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if ticks == 25 {
                    handle.cancel(&ticket);
                    ui.step(Duration::ZERO).unwrap();
                    ticket = handle.show_prompt(seal());
                    ui.step(Duration::ZERO).unwrap();
                    ticks = 0;
                }
                let start = Instant::now();
                clock.advance(Duration::from_secs(1));
                let drew = ui.step(Duration::ZERO).unwrap();
                total += start.elapsed();
                black_box(drew);
                ticks += 1;
                // The first tick after repaint_all redraws everything once.
                if !reported && ticks == 3 {
                    reported = true;
                    let d = screen.last_dirty();
                    eprintln!(
                        "countdown tick repaints {}x{} at ({}, {}) of 800x480",
                        d.w, d.h, d.x, d.y
                    );
                }
            }
            total
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
