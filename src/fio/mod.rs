//! `ferrite fio`: fio 3.33 job files run against Ferrite's targets, with fio's JSON output.
//!
//! - `lexer`: job-file lines into ordered sections (comments, include, `${VAR}`).
//! - `units`: fio's number, size and time parsing.
//! - `options`: typed job options; `jobs`: global inheritance, clones, groups.

pub mod error;
pub mod jobs;
pub mod lexer;
pub mod options;
pub mod units;

pub use error::JobError;
