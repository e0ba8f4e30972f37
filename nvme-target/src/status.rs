//! NVMe-style completion statuses: every command ends in exactly one of these.

use std::fmt;

/// A command's outcome, named after the NVMe status it stands for (status code type, code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Generic 0x00: the command completed.
    Success,
    /// Generic 0x01: the opcode is not one this controller implements.
    InvalidOpcode,
    /// Generic 0x02: a field of the command is invalid (e.g. a length not a multiple of a sector).
    InvalidField,
    /// Generic 0x06: the controller failed for a reason of its own (not the host's input).
    InternalError,
    /// Generic 0x20: the namespace is write protected (configured read-only, or worn out).
    WriteProtected,
    /// Generic 0x80: the LBA range goes past the namespace's capacity (or overflows).
    LbaOutOfRange,
    /// Media 0x80: the write could not be stored.
    WriteFault,
    /// Media 0x81: a block could not be read back (uncorrectable or failed authentication).
    UnrecoveredReadError,
}

impl Status {
    /// (status code type, status code) as in the NVMe completion queue entry.
    pub fn code(self) -> (u8, u8) {
        match self {
            Status::Success => (0, 0x00),
            Status::InvalidOpcode => (0, 0x01),
            Status::InvalidField => (0, 0x02),
            Status::InternalError => (0, 0x06),
            Status::WriteProtected => (0, 0x20),
            Status::LbaOutOfRange => (0, 0x80),
            Status::WriteFault => (2, 0x80),
            Status::UnrecoveredReadError => (2, 0x81),
        }
    }

    pub fn is_success(self) -> bool {
        self == Status::Success
    }

    /// Whether the failure is one a SMART log counts as a media and data integrity error.
    pub fn is_media_error(self) -> bool {
        matches!(self, Status::WriteFault | Status::UnrecoveredReadError)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sct, sc) = self.code();
        write!(f, "{self:?} (sct {sct}, sc {sc:#04x})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_nvme_base_specification() {
        assert_eq!(Status::Success.code(), (0, 0));
        assert_eq!(Status::InvalidOpcode.code(), (0, 1));
        assert_eq!(Status::LbaOutOfRange.code(), (0, 0x80));
        assert_eq!(Status::WriteProtected.code(), (0, 0x20));
        assert_eq!(Status::UnrecoveredReadError.code(), (2, 0x81));
        assert!(Status::WriteFault.is_media_error());
        assert!(!Status::LbaOutOfRange.is_media_error());
        assert_eq!(
            Status::LbaOutOfRange.to_string(),
            "LbaOutOfRange (sct 0, sc 0x80)"
        );
    }
}
