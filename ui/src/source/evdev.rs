//! Placeholder: written by the hardware-backends engineer.
