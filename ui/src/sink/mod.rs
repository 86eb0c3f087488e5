//! Display sinks: where rendered frames go (memory for tests and the
//! emulator, Linux framebuffer, SPI TFT behind feature `spi-display`).

pub mod memory;

#[cfg(target_os = "linux")]
pub mod fbdev;

#[cfg(feature = "spi-display")]
pub mod spi;
