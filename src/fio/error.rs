//! Errors in job files: each names the file and line, and the option when there is one.

use std::fmt;

use super::lexer::{Location, RawOption};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub at: Option<Location>,
    pub option: Option<String>,
    pub message: String,
}

impl JobError {
    pub fn plain(message: impl Into<String>) -> Self {
        Self {
            at: None,
            option: None,
            message: message.into(),
        }
    }

    pub fn at(at: &Location, message: impl Into<String>) -> Self {
        Self {
            at: Some(at.clone()),
            option: None,
            message: message.into(),
        }
    }

    /// An error in option `o`: the message says which option, where.
    pub fn option(o: &RawOption, message: impl Into<String>) -> Self {
        Self {
            at: Some(o.at.clone()),
            option: Some(o.name.clone()),
            message: message.into(),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        if let Some(option) = &self.option {
            write!(f, "option '{option}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}
