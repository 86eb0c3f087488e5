//! The status LED: one light that says, from across the room, what the
//! device wants.
//!
//! | state (first that holds)        | pattern                          |
//! |---------------------------------|----------------------------------|
//! | locked                          | off                              |
//! | a prompt waits for the owner    | blinks, once a second            |
//! | an alert not yet acknowledged   | blinks fast, four times a second |
//! | otherwise (idle)                | steady on                        |
//!
//! A waiting prompt comes before an alert: the prompt times out within its
//! timeout, and it is what the owner must act on now; the alert is still
//! there (fast) once it is gone. Locked comes first of all: a locked
//! device says nothing about what it holds. (The lock does not exist yet:
//! [`LedInputs::locked`] is the input later work drives, through
//! [`super::BoardStatus::set_locked`].)
//!
//! One more pattern is not a state of a running device: [`Pattern::Error`],
//! two short flashes every two seconds, shown by `otc-device
//! status-led-error` while `/init` waits to try again a device that could
//! not start (no display, say): [`show_error`].
//!
//! A blink starts with its dark half, so a change of state shows at once.
//! [`pattern`] and [`Pattern::level`] are pure functions of the inputs and
//! the monotonic clock; [`LedDriver`] writes the level to a [`StatusLed`]
//! (the rppal pin on a device, a twin in tests) only when it changes.

use std::time::Duration;

/// The LED itself: on or off. The device's is a GPIO line driven by rppal
/// ([`super::gpio`]); tests use a twin that records what it was told.
pub trait StatusLed: Send {
    fn set(&mut self, on: bool) -> std::io::Result<()>;
}

/// One full blink (dark half, then lit half) while a prompt waits.
pub const BLINK_PERIOD: Duration = Duration::from_millis(1000);
/// One full blink while an alert is not acknowledged.
pub const FAST_BLINK_PERIOD: Duration = Duration::from_millis(250);

/// One period of [`Pattern::Error`]: two 200 ms flashes, then dark.
pub const ERROR_PERIOD: Duration = Duration::from_millis(2000);

/// What decides the LED's pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedInputs {
    pub prompt_waiting: bool,
    pub unacked_alert: bool,
    pub locked: bool,
}

/// How the LED shows a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Steady,
    Blink,
    FastBlink,
    Off,
    /// The device could not start: two short flashes every
    /// [`ERROR_PERIOD`] (dark 200 ms, lit 200 ms, dark 200 ms, lit 200 ms,
    /// dark 1200 ms).
    Error,
}

/// The pattern for `inputs` (see the module doc's table).
pub fn pattern(inputs: &LedInputs) -> Pattern {
    if inputs.locked {
        Pattern::Off
    } else if inputs.prompt_waiting {
        Pattern::Blink
    } else if inputs.unacked_alert {
        Pattern::FastBlink
    } else {
        Pattern::Steady
    }
}

impl Pattern {
    /// Whether the LED is lit `since` after this pattern began.
    pub fn level(self, since: Duration) -> bool {
        let lit_half = |period: Duration| {
            let p = period.as_millis().max(1);
            since.as_millis() % p >= p / 2
        };
        match self {
            Pattern::Steady => true,
            Pattern::Off => false,
            Pattern::Blink => lit_half(BLINK_PERIOD),
            Pattern::FastBlink => lit_half(FAST_BLINK_PERIOD),
            Pattern::Error => {
                let t = since.as_millis() % ERROR_PERIOD.as_millis();
                (200..400).contains(&t) || (600..800).contains(&t)
            }
        }
    }
}

/// Show [`Pattern::Error`] on `led` for `span` of `clock`'s time, then
/// switch it off; `sleep` waits between updates (every 20 ms of it). A
/// failing write is said once and tried again quietly.
pub fn show_error(
    led: &mut dyn StatusLed,
    clock: &dyn otc_ui::Clock,
    span: Duration,
    sleep: &mut dyn FnMut(Duration),
) {
    let began = clock.now();
    let mut written = None;
    let mut said = false;
    let mut set = |led: &mut dyn StatusLed, lit: bool| {
        if written == Some(lit) {
            return;
        }
        match led.set(lit) {
            Ok(()) => written = Some(lit),
            Err(e) if !said => {
                said = true;
                eprintln!("otc-device: cannot set the status LED: {e} (tried again quietly)");
            }
            Err(_) => {}
        }
    };
    loop {
        let since = clock.now().saturating_sub(began);
        if since >= span {
            break;
        }
        set(led, Pattern::Error.level(since));
        sleep(Duration::from_millis(20));
    }
    set(led, false);
}

/// Drives a [`StatusLed`]: call [`update`](Self::update) often (every
/// few tens of milliseconds); it writes only changes.
pub struct LedDriver {
    led: Box<dyn StatusLed>,
    /// The pattern shown and when it began.
    shown: Option<(Pattern, Duration)>,
    written: Option<bool>,
    /// A write failed once already (said once, then tried quietly).
    failed: bool,
}

impl LedDriver {
    pub fn new(led: Box<dyn StatusLed>) -> Self {
        LedDriver {
            led,
            shown: None,
            written: None,
            failed: false,
        }
    }

    /// The pattern now shown, if any update happened yet.
    pub fn pattern(&self) -> Option<Pattern> {
        self.shown.map(|(p, _)| p)
    }

    /// Show the pattern `inputs` call for, at time `now`.
    pub fn update(&mut self, inputs: &LedInputs, now: Duration) {
        let p = pattern(inputs);
        let since = match self.shown {
            Some((shown, began)) if shown == p => now.saturating_sub(began),
            _ => {
                self.shown = Some((p, now));
                Duration::ZERO
            }
        };
        let lit = p.level(since);
        if self.written == Some(lit) {
            return;
        }
        match self.led.set(lit) {
            Ok(()) => self.written = Some(lit),
            Err(e) if !self.failed => {
                self.failed = true;
                eprintln!("otc-device: cannot set the status LED: {e} (tried again quietly)");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod twin {
    use super::StatusLed;
    use std::sync::{Arc, Mutex};

    /// The LED's twin: every level it was set to, in order.
    #[derive(Clone, Default)]
    pub struct TwinLed(pub Arc<Mutex<Vec<bool>>>);

    impl TwinLed {
        /// The level it shows now (off before its first write).
        pub fn lit(&self) -> bool {
            self.0.lock().unwrap().last().copied().unwrap_or(false)
        }
        pub fn writes(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl StatusLed for TwinLed {
        fn set(&mut self, on: bool) -> std::io::Result<()> {
            self.0.lock().unwrap().push(on);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::twin::TwinLed;
    use super::*;
    use otc_ui::{Clock, FakeClock};

    const MS: Duration = Duration::from_millis(1);

    /// The LED's levels over `span`, sampled every 5 ms on the fake clock.
    fn sample(
        d: &mut LedDriver,
        led: &TwinLed,
        clock: &FakeClock,
        inputs: LedInputs,
        span: Duration,
    ) -> Vec<bool> {
        let mut seen = Vec::new();
        let end = clock.now() + span;
        while clock.now() < end {
            d.update(&inputs, clock.now());
            seen.push(led.lit());
            clock.advance(5 * MS);
        }
        seen
    }

    /// How many times the level went from dark to lit in `levels`.
    fn rises(levels: &[bool]) -> usize {
        levels.windows(2).filter(|w| !w[0] && w[1]).count()
    }

    /// The error pattern: two flashes a period, and the LED ends dark.
    #[test]
    fn the_error_pattern_flashes_twice_every_two_seconds_then_goes_dark() {
        let led = TwinLed::default();
        let clock = FakeClock::new();
        let mut twin = led.clone();
        let mut seen = Vec::new();
        let c = clock.clone();
        let l = led.clone();
        show_error(&mut twin, &clock, 3 * ERROR_PERIOD, &mut |d| {
            seen.push(l.lit());
            c.advance(d);
        });
        // 20 ms steps over three periods: 300 samples, six flashes of ten.
        assert_eq!(seen.len(), 300);
        assert_eq!(rises(&seen), 6);
        assert_eq!(seen.iter().filter(|l| **l).count(), 60);
        assert!(!seen[0], "it starts dark");
        assert!(!led.lit(), "it ends dark");
        assert_eq!(
            led.writes(),
            13,
            "six flashes on and off, then the final dark"
        );
    }

    #[test]
    fn the_state_machine_picks_the_pattern() {
        let idle = LedInputs::default();
        assert_eq!(pattern(&idle), Pattern::Steady);
        let prompt = LedInputs {
            prompt_waiting: true,
            ..idle
        };
        assert_eq!(pattern(&prompt), Pattern::Blink);
        let alert = LedInputs {
            unacked_alert: true,
            ..idle
        };
        assert_eq!(pattern(&alert), Pattern::FastBlink);
        let both = LedInputs {
            prompt_waiting: true,
            unacked_alert: true,
            ..idle
        };
        assert_eq!(pattern(&both), Pattern::Blink, "the prompt comes first");
        for locked in [
            LedInputs {
                locked: true,
                ..idle
            },
            LedInputs {
                locked: true,
                ..both
            },
        ] {
            assert_eq!(pattern(&locked), Pattern::Off, "locked comes before all");
        }
    }

    /// Through the twin, on the fake clock: steady when idle, one blink a
    /// second while a prompt waits, four while an alert is unacknowledged,
    /// dark when locked, and steady again when all is clear.
    #[test]
    fn the_twin_led_shows_each_state() {
        let clock = FakeClock::new();
        let led = TwinLed::default();
        let mut d = LedDriver::new(Box::new(led.clone()));
        let idle = LedInputs::default();
        let levels = sample(&mut d, &led, &clock, idle, Duration::from_secs(2));
        assert!(levels.iter().all(|&l| l), "idle is steady on");
        assert_eq!(led.writes(), 1, "a steady LED is written once");

        let prompt = LedInputs {
            prompt_waiting: true,
            ..idle
        };
        let levels = sample(&mut d, &led, &clock, prompt, Duration::from_secs(4));
        assert!(
            !levels[0],
            "a blink starts dark, so the change shows at once"
        );
        assert_eq!(rises(&levels), 4, "once a second for 4 s: {levels:?}");
        let lit = levels.iter().filter(|&&l| l).count();
        assert_eq!(lit * 2, levels.len(), "half lit, half dark");

        let alert = LedInputs {
            unacked_alert: true,
            ..idle
        };
        let levels = sample(&mut d, &led, &clock, alert, Duration::from_secs(2));
        assert_eq!(rises(&levels), 8, "four times a second for 2 s");

        let locked = LedInputs {
            locked: true,
            ..alert
        };
        let levels = sample(&mut d, &led, &clock, locked, Duration::from_secs(2));
        assert!(levels.iter().all(|&l| !l), "locked is dark");

        let levels = sample(&mut d, &led, &clock, idle, Duration::from_millis(50));
        assert!(levels.iter().all(|&l| l), "idle again: steady on at once");
        assert_eq!(d.pattern(), Some(Pattern::Steady));
    }

    /// A failing LED is said once and does not stop the driver.
    #[test]
    fn a_failing_led_is_tried_again() {
        struct Flaky(u32, TwinLed);
        impl StatusLed for Flaky {
            fn set(&mut self, on: bool) -> std::io::Result<()> {
                if self.0 > 0 {
                    self.0 -= 1;
                    return Err(std::io::Error::other("line busy"));
                }
                self.1.set(on)
            }
        }
        let led = TwinLed::default();
        let mut d = LedDriver::new(Box::new(Flaky(2, led.clone())));
        for t in 0..3 {
            d.update(&LedInputs::default(), t * MS);
        }
        assert!(led.lit(), "the third try lit it");
        assert_eq!(led.writes(), 1);
    }
}
