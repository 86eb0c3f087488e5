//! The platform seam: everything the device reads from the world that a
//! test must be able to fake, in one bundle (OpenSK's `Env` is the model).
//!
//! [`Platform`] gives the monotonic clock (prompt timeouts, countdowns,
//! lockouts), the wall clock (audit entries, alert times), random bytes and
//! the Ethernet link state (up or down, and the interface's address). [`RealPlatform`] reads the kernel;
//! [`TestPlatform`] is its twin for tests: a [`FakeClock`] that moves only
//! when told, a wall clock that says what it is set to, a seeded RNG and a
//! link that is up or down as the test sets it.
//!
//! Decisions:
//! * The monotonic clock stays otc-ui's [`Clock`] trait (the screen's
//!   countdowns and Slint's timers read it, and otc-ui must not depend on
//!   the firmware); the platform hands out that clock.
//! * Pad bytes come from [`RandomSource::fill_random`], the pad crate's
//!   random seam, which [`Platform`] has as a supertrait
//!   ([`crate::pad::generate::create_pad_with`] takes any source;
//!   `create_pad` uses the kernel's, as [`RealPlatform`] does). The
//!   twin's seeded sequence is the pad crate's [`SeededRandom`]. The
//!   temporary-name tokens (`pad/src/fsutil.rs`) still call `getrandom`
//!   themselves: they are names, not secrets, and the
//!   store is driven by the command line, outside any platform.
//! * The board's pins are not in this bundle: the SPI display's lines are
//!   opened once at start by `board::open_spi_display` and handed
//!   to otc-ui's sink as `embedded-hal` pins (nothing reads them at run
//!   time; their twin is in otc-ui's SPI sink tests). The status LED, the
//!   push buttons and the backlight are read and driven at run time, each
//!   behind its own small trait in `board/` with its own twin; their
//!   timing reads this bundle's clock.

use otc_ui::{Clock, FakeClock, SystemClock};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use otc_pad::random::{KernelRandom, RandomSource, RngError, SeededRandom};

/// What the device reads from the world. See the module doc. Random
/// bytes: the supertrait [`RandomSource`].
pub trait Platform: RandomSource {
    /// The monotonic clock.
    fn clock(&self) -> Arc<dyn Clock>;
    /// Wall time, in seconds since the Unix epoch.
    fn unix_now(&self) -> u64;
    /// Whether Ethernet interface `name` has its link up.
    fn link_up(&self, name: &str) -> bool;
    /// The first IPv4 address of interface `name`, if it has one.
    fn ipv4(&self, name: &str) -> Option<Ipv4Addr>;
}

/// Wall time from the system clock, in Unix seconds (0 before 1970).
pub fn system_unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The real platform: the system clocks, the kernel RNG, `/sys` link state.
pub struct RealPlatform {
    clock: Arc<SystemClock>,
}

impl RealPlatform {
    pub fn new() -> Self {
        RealPlatform {
            clock: Arc::new(SystemClock::new()),
        }
    }
}

impl Default for RealPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl RandomSource for RealPlatform {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), RngError> {
        KernelRandom.fill_random(buf)
    }
}

impl Platform for RealPlatform {
    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn unix_now(&self) -> u64 {
        system_unix_now()
    }

    fn link_up(&self, name: &str) -> bool {
        crate::board::link_up(name)
    }

    fn ipv4(&self, name: &str) -> Option<Ipv4Addr> {
        crate::net::interface_ipv4(name).ok()
    }
}

/// The test twin: fake clocks, a seeded RNG, a settable link. Its random
/// bytes are predictable by design; nothing in the device binary builds
/// one (only tests and benches do).
pub struct TestPlatform {
    clock: FakeClock,
    wall: AtomicU64,
    rng: SeededRandom,
    link: AtomicBool,
    address: Mutex<Option<Ipv4Addr>>,
}

impl TestPlatform {
    /// Wall clock at `wall` (Unix seconds), monotonic clock at zero, RNG
    /// seeded with `seed`, link up, no address.
    pub fn new(wall: u64, seed: u64) -> Self {
        TestPlatform {
            clock: FakeClock::new(),
            wall: AtomicU64::new(wall),
            rng: SeededRandom::new(seed),
            link: AtomicBool::new(true),
            address: Mutex::new(None),
        }
    }

    /// The fake monotonic clock (clones share its time).
    pub fn fake_clock(&self) -> FakeClock {
        self.clock.clone()
    }

    /// Set the wall clock.
    pub fn set_wall(&self, unix_seconds: u64) {
        self.wall.store(unix_seconds, Ordering::Relaxed);
    }

    /// Set the link state every interface reports.
    pub fn set_link(&self, up: bool) {
        self.link.store(up, Ordering::Relaxed);
    }

    /// Set the address every interface reports.
    pub fn set_address(&self, address: Option<Ipv4Addr>) {
        *self.address.lock().unwrap_or_else(|e| e.into_inner()) = address;
    }
}

impl RandomSource for TestPlatform {
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), RngError> {
        self.rng.fill_random(buf)
    }
}

impl Platform for TestPlatform {
    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    fn unix_now(&self) -> u64 {
        self.wall.load(Ordering::Relaxed)
    }

    fn link_up(&self, _name: &str) -> bool {
        self.link.load(Ordering::Relaxed)
    }

    fn ipv4(&self, _name: &str) -> Option<Ipv4Addr> {
        *self.address.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_twin_says_what_it_is_told() {
        let p = TestPlatform::new(1_000, 7);
        assert_eq!(p.unix_now(), 1_000);
        p.set_wall(2_000);
        assert_eq!(p.unix_now(), 2_000);
        assert!(p.link_up("eth0"));
        p.set_link(false);
        assert!(!p.link_up("eth0"));
        let clock = p.clock();
        assert_eq!(clock.now(), Duration::ZERO);
        p.fake_clock().advance(Duration::from_secs(3));
        assert_eq!(clock.now(), Duration::from_secs(3));
    }

    #[test]
    fn the_twin_rng_is_seeded() {
        let (a, b, c) = (
            TestPlatform::new(0, 1),
            TestPlatform::new(0, 1),
            TestPlatform::new(0, 2),
        );
        let (mut x, mut y, mut z) = ([0u8; 13], [0u8; 13], [0u8; 13]);
        a.fill_random(&mut x).unwrap();
        b.fill_random(&mut y).unwrap();
        c.fill_random(&mut z).unwrap();
        assert_eq!(x, y);
        assert_ne!(x, z);
        let mut next = [0u8; 13];
        a.fill_random(&mut next).unwrap();
        assert_ne!(x, next, "the sequence moves on");
    }
}
