//! The status LED and the push buttons on the Raspberry Pi's GPIO, through
//! `rppal` (BCM GPIO numbers, as `otc.toml` gives them).
//!
//! Wiring (see `hw/` for the tables):
//! - the LED: GPIO `[status_led] pin` → resistor (330 Ω to 1 kΩ) → LED
//!   anode, cathode → ground; driven high to light;
//! - each button: between GPIO `[buttons] approve_pin` (or `reject_pin`)
//!   and ground; the pin's internal pull-up holds it high, so pressed
//!   reads low.
//!
//! `rppal` finds the Pi's model from the device tree and maps the GPIO
//! registers (`/dev/gpiomem`). Where there is none (QEMU, a desktop) or a
//! pin cannot be had, [`open`] says so once and the device runs without
//! that piece: the LED and buttons are a convenience, never a reason not
//! to start.

use super::buttons::{Buttons, Levels};
use super::led::StatusLed;
use crate::config::{ButtonsConfig, StatusLedConfig};

/// A GPIO line driven high to light the LED.
struct GpioLed(rppal::gpio::OutputPin);

impl StatusLed for GpioLed {
    fn set(&mut self, on: bool) -> std::io::Result<()> {
        if on {
            self.0.set_high();
        } else {
            self.0.set_low();
        }
        Ok(())
    }
}

/// Two GPIO inputs with pull-ups; low is pressed.
struct GpioButtons {
    approve: rppal::gpio::InputPin,
    reject: rppal::gpio::InputPin,
}

impl Buttons for GpioButtons {
    fn read(&mut self) -> std::io::Result<Levels> {
        Ok(Levels {
            approve: self.approve.is_low(),
            reject: self.reject.is_low(),
        })
    }
}

/// What [`open`] got.
#[derive(Default)]
pub struct Opened {
    pub led: Option<Box<dyn StatusLed>>,
    pub buttons: Option<Box<dyn Buttons>>,
    /// For the About screen: ("Status LED", "GPIO 17"), ("Buttons", ...),
    /// or why a piece is off.
    pub facts: Vec<(String, String)>,
}

/// Open the configured LED and buttons. Nothing configured: nothing is
/// opened and nothing said. No GPIO, or a pin that cannot be had: said
/// once on stderr, and that piece is off.
pub fn open(led: Option<&StatusLedConfig>, buttons: Option<&ButtonsConfig>) -> Opened {
    let mut out = Opened::default();
    if led.is_none() && buttons.is_none() {
        return out;
    }
    let gpio = match rppal::gpio::Gpio::new() {
        Ok(g) => g,
        Err(e) => {
            let what = match (led, buttons) {
                (Some(_), Some(_)) => "the status LED and the push buttons are",
                (Some(_), None) => "the status LED is",
                _ => "the push buttons are",
            };
            eprintln!(
                "otc-device: no GPIO here ({e}); {what} off, everything else works (expected in \
                 QEMU or on a desktop)"
            );
            let why = format!("off: no GPIO ({e})");
            if led.is_some() {
                out.facts.push(("Status LED".into(), why.clone()));
            }
            if buttons.is_some() {
                out.facts.push(("Buttons".into(), why));
            }
            return out;
        }
    };
    if let Some(cfg) = led {
        match gpio.get(cfg.pin) {
            Ok(pin) => {
                out.led = Some(Box::new(GpioLed(pin.into_output_low())));
                out.facts
                    .push(("Status LED".into(), format!("GPIO {}", cfg.pin)));
            }
            Err(e) => {
                eprintln!(
                    "otc-device: cannot use GPIO {} for the status LED ({e}); it is off",
                    cfg.pin
                );
                out.facts
                    .push(("Status LED".into(), format!("off: GPIO {}: {e}", cfg.pin)));
            }
        }
    }
    if let Some(cfg) = buttons {
        let pins = gpio
            .get(cfg.approve_pin)
            .map_err(|e| (cfg.approve_pin, e))
            .and_then(|a| {
                gpio.get(cfg.reject_pin)
                    .map(|r| (a, r))
                    .map_err(|e| (cfg.reject_pin, e))
            });
        match pins {
            Ok((a, r)) => {
                out.buttons = Some(Box::new(GpioButtons {
                    approve: a.into_input_pullup(),
                    reject: r.into_input_pullup(),
                }));
                out.facts.push((
                    "Buttons".into(),
                    format!(
                        "Approve GPIO {} · Reject GPIO {}",
                        cfg.approve_pin, cfg.reject_pin
                    ),
                ));
            }
            Err((pin, e)) => {
                eprintln!(
                    "otc-device: cannot use GPIO {pin} for a push button ({e}); the buttons are off"
                );
                out.facts
                    .push(("Buttons".into(), format!("off: GPIO {pin}: {e}")));
            }
        }
    }
    out
}
