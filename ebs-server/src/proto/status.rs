//! Status codes of an ERROR reply (2 bytes on the wire). Zero is never sent: success is a DONE,
//! ATTACHED or DATA reply.

/// Why the server refused or failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The request could not be parsed (the server could read its request id).
    Malformed,
    /// A kind or flag this server does not implement.
    Unsupported,
    /// I/O on a session with no attached volume.
    NotAttached,
    /// ATTACH on a session that already has a volume.
    AlreadyAttached,
    /// No volume has that name.
    NoSuchVolume,
    /// The credential does not match the volume's.
    BadCredential,
    /// Another client holds the volume and it was not created multi-attach.
    VolumeBusy,
    /// The blocks lie (partly) past the end of the volume.
    OutOfRange,
    /// The stored data could not be read back (media error, failed authentication of a page).
    Media,
    /// The server's storage went read-only (spares exhausted).
    ReadOnly,
    /// Any other failure of the server's storage.
    Internal,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Malformed => 1,
            Status::Unsupported => 2,
            Status::NotAttached => 3,
            Status::AlreadyAttached => 4,
            Status::NoSuchVolume => 5,
            Status::BadCredential => 6,
            Status::VolumeBusy => 7,
            Status::OutOfRange => 8,
            Status::Media => 9,
            Status::ReadOnly => 10,
            Status::Internal => 11,
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Status::Malformed,
            2 => Status::Unsupported,
            3 => Status::NotAttached,
            4 => Status::AlreadyAttached,
            5 => Status::NoSuchVolume,
            6 => Status::BadCredential,
            7 => Status::VolumeBusy,
            8 => Status::OutOfRange,
            9 => Status::Media,
            10 => Status::ReadOnly,
            11 => Status::Internal,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_zero_is_not_a_status() {
        for code in 1..=11 {
            let status = Status::from_code(code).expect("assigned code");
            assert_eq!(status.code(), code);
        }
        assert_eq!(Status::from_code(0), None);
        assert_eq!(Status::from_code(12), None);
    }
}
