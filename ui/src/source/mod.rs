//! Touch sources: where presses come from (scripted for tests, a channel for
//! the emulator page, evdev on Linux).

pub mod scripted;

#[cfg(target_os = "linux")]
pub mod evdev;
