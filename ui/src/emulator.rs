//! The emulator page (feature `emulator`): see below.
