//! Emulated NAND devices and one flash translation layer over all of them.

pub mod nand;
