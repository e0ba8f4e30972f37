//! The handshake (format version 4): HELLO and HELLO_ACK, which key a connection before any
//! DATA, and VERSION_REFUSED, the answer to a HELLO of a version this side does not speak.
//!
//! The client sends HELLO with an ephemeral X25519 public key, a random and the volume it will
//! attach. The server looks the volume up, takes its stored credential hash as the pre-shared
//! key, and answers HELLO_ACK with its own ephemeral key, random, and an HMAC over the transcript
//! (`seal::SessionKeys::confirm`) that proves it holds the PSK. The client proves the same to the
//! server with its first sealed packet. Neither message is keyed yet, so each has a CRC against
//! corruption and a fixed size (HELLO bounded by `VOLUME_NAME_LEN_MAX`), and the parse checks every
//! length before it reads.
//!
//! ```text
//! HELLO      0 magic "FSRD" | 4 version 4 | 5 kind 5 | 6..8 zero | 8 connection id u64 LE
//!            16 client public key [32] | 48 client random [32] | 80 volume name length u16 LE
//!            82 volume name (UTF-8, 1..=255 bytes) | then CRC-32 of all before it, u32 LE
//! HELLO_ACK  0 magic | 4 version 4 | 5 kind 6 | 6..8 zero | 8 connection id u64 LE
//!            16 server public key [32] | 48 server random [32] | 80 confirm [32] | 112 CRC-32
//! VERSION_REFUSED (the same 20 bytes in every version, so any later one can read it)
//!            0 magic | 4 refusing side's version | 5 kind 8 | 6 version of the HELLO refused
//!            7 zero | 8 connection id u64 LE | 16 CRC-32
//! ```
//!
//! Version history (the version byte of HELLO, HELLO_ACK and sealed packets):
//! ```text
//! 2  sealed packets without piggybacked acknowledgements; no VERSION_REFUSED
//! 4  DATA_ACK (kind 7) carries acknowledgements; VERSION_REFUSED
//! ```

use aws_lc_rs::{agreement, rand as lc_rand, rand::SecureRandom};
use thiserror::Error;

use super::packet::{HEADER_LEN, MAGIC};
use super::seal::{
    CONFIRM_LEN, KEY_EPOCH_SEALED, PSK_LEN, PUBLIC_KEY_LEN, RANDOM_LEN, SessionKeys, Transcript,
};

/// The format version of sealed packets and of the handshake. 2 had no DATA_ACK: a peer of
/// version 2 is refused at the HELLO (VERSION_REFUSED), before any packet could be misread.
pub const VERSION_SEALED: u8 = 4;
/// Bytes of a VERSION_REFUSED.
pub const VERSION_REFUSED_LEN: usize = 20;
/// Longest volume name a HELLO carries.
pub const VOLUME_NAME_LEN_MAX: usize = 255;
/// Bytes of a HELLO before the volume name.
pub const HELLO_FIXED_LEN: usize = 82;
/// Bytes of a HELLO_ACK.
pub const HELLO_ACK_LEN: usize = 116;
/// Shortest HELLO (a one-byte volume name), in version 2 as in this one.
pub const HELLO_LEN_MIN: usize = HELLO_FIXED_LEN + 1 + CRC_LEN;
/// Largest HELLO.
pub const HELLO_LEN_MAX: usize = HELLO_FIXED_LEN + VOLUME_NAME_LEN_MAX + CRC_LEN;

const KIND_HELLO: u8 = 5;
const KIND_HELLO_ACK: u8 = 6;
/// Not 7: that is DATA_ACK inside sealed packets.
const KIND_VERSION_REFUSED: u8 = 8;
const CRC_LEN: usize = 4;

/// Why a handshake message was refused or the handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("handshake message of {len} bytes has the wrong length")]
    Length { len: usize },
    #[error("not a handshake message of this version and the expected kind")]
    Malformed,
    #[error("handshake crc mismatch")]
    BadChecksum,
    #[error("volume name of {len} bytes is empty, too long or not UTF-8")]
    VolumeName { len: usize },
    #[error("HELLO_ACK for connection {found}, expected {expected}")]
    WrongConnection { expected: u64, found: u64 },
    #[error("the peer's public key is invalid")]
    BadPublicKey,
    #[error(
        "the server's confirmation does not verify: wrong credential, no such volume, or not the server"
    )]
    BadConfirm,
    #[error("the system random source failed")]
    Random,
    #[error(
        "the server speaks SRD version {theirs}, this client version {ours}: upgrade the older side"
    )]
    VersionMismatch { ours: u8, theirs: u8 },
}

/// What a received datagram is, from its first bytes alone (nothing is authenticated yet): how
/// an I/O loop routes it before any connection state is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A HELLO of this version (not yet parsed or checked).
    Hello,
    /// A HELLO_ACK of this version (not yet parsed or checked).
    HelloAck,
    /// A sealed packet of this version (key epoch 1) naming this connection in its header.
    Sealed { connection_id: u64 },
    /// A HELLO of another version (a peer older or newer than this build): answered with
    /// VERSION_REFUSED, never keyed.
    HelloOtherVersion { version: u8, connection_id: u64 },
    /// A VERSION_REFUSED, of any version (not yet parsed or checked).
    VersionRefused,
    /// Anything else: unsealed packets, another protocol, or too short to tell.
    Other,
}

/// Classifies a datagram by magic, version, kind and key epoch. Never panics.
pub fn classify(datagram: &[u8]) -> Incoming {
    if datagram.len() < 16 || datagram[..4] != MAGIC {
        return Incoming::Other;
    }
    // Kinds 5 and 8 mean HELLO and VERSION_REFUSED in every version that has a handshake (2
    // and up); version 1 had no kind beyond 4.
    if datagram[4] >= 2 && datagram[4] != VERSION_SEALED {
        return match datagram[5] {
            // Only as long as the shortest HELLO of any version: the refusal sent back is then
            // never larger than what asked for it, so it cannot amplify a spoofed source.
            KIND_HELLO if datagram.len() >= HELLO_LEN_MIN => Incoming::HelloOtherVersion {
                version: datagram[4],
                connection_id: u64_at(datagram, 8),
            },
            KIND_VERSION_REFUSED => Incoming::VersionRefused,
            _ => Incoming::Other,
        };
    }
    if datagram[4] != VERSION_SEALED {
        return Incoming::Other;
    }
    if datagram[5] == KIND_VERSION_REFUSED {
        return Incoming::VersionRefused;
    }
    match datagram[5] {
        KIND_HELLO => Incoming::Hello,
        KIND_HELLO_ACK => Incoming::HelloAck,
        _ if datagram.len() >= HEADER_LEN && datagram[7] == KEY_EPOCH_SEALED => Incoming::Sealed {
            connection_id: u64_at(datagram, 8),
        },
        _ => Incoming::Other,
    }
}

/// A parsed HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub connection_id: u64,
    pub client_public_key: [u8; PUBLIC_KEY_LEN],
    pub client_random: [u8; RANDOM_LEN],
    pub volume: String,
}

/// A parsed HELLO_ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAck {
    pub connection_id: u64,
    pub server_public_key: [u8; PUBLIC_KEY_LEN],
    pub server_random: [u8; RANDOM_LEN],
    pub confirm: [u8; CONFIRM_LEN],
}

fn prefix(out: &mut Vec<u8>, kind: u8, connection_id: u64) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION_SEALED);
    out.push(kind);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&connection_id.to_le_bytes());
}

fn push_crc(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks length bounds, CRC, magic, version, kind and zero bytes; returns the bytes before the
/// CRC.
fn check(datagram: &[u8], kind: u8) -> Result<&[u8], HandshakeError> {
    let len = datagram.len();
    let Some(crc_at) = len.checked_sub(CRC_LEN) else {
        return Err(HandshakeError::Length { len });
    };
    if crc_at < 16 {
        return Err(HandshakeError::Length { len });
    }
    let (covered, stored) = datagram.split_at(crc_at);
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    if crc32fast::hash(covered) != stored {
        return Err(HandshakeError::BadChecksum);
    }
    if covered[..4] != MAGIC || covered[4] != VERSION_SEALED || covered[5] != kind {
        return Err(HandshakeError::Malformed);
    }
    if covered[6..8] != [0, 0] {
        return Err(HandshakeError::Malformed);
    }
    Ok(covered)
}

fn array32(b: &[u8], at: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&b[at..at + 32]);
    out
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(out)
}

impl Hello {
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        let name = self.volume.as_bytes();
        if name.is_empty() || name.len() > VOLUME_NAME_LEN_MAX {
            return Err(HandshakeError::VolumeName { len: name.len() });
        }
        let mut out = Vec::with_capacity(HELLO_FIXED_LEN + name.len() + CRC_LEN);
        prefix(&mut out, KIND_HELLO, self.connection_id);
        out.extend_from_slice(&self.client_public_key);
        out.extend_from_slice(&self.client_random);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        push_crc(&mut out);
        Ok(out)
    }

    /// Parses untrusted bytes; never panics.
    pub fn parse(datagram: &[u8]) -> Result<Hello, HandshakeError> {
        let len = datagram.len();
        if !(HELLO_LEN_MIN..=HELLO_LEN_MAX).contains(&len) {
            return Err(HandshakeError::Length { len });
        }
        let b = check(datagram, KIND_HELLO)?;
        let name_len = usize::from(u16::from_le_bytes([b[80], b[81]]));
        if b.len() != HELLO_FIXED_LEN + name_len {
            return Err(HandshakeError::Length { len });
        }
        let volume = std::str::from_utf8(&b[HELLO_FIXED_LEN..])
            .map_err(|_| HandshakeError::VolumeName { len: name_len })?;
        if volume.is_empty() {
            return Err(HandshakeError::VolumeName { len: 0 });
        }
        Ok(Hello {
            connection_id: u64_at(b, 8),
            client_public_key: array32(b, 16),
            client_random: array32(b, 48),
            volume: volume.to_owned(),
        })
    }
}

/// The answer to a HELLO of another version: which version refused it and which it was, for
/// the connection the HELLO named. Unkeyed (there are no keys across versions), CRC-checked;
/// its 20-byte layout is the same in every version so that any peer can show the mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRefused {
    /// The version of the side that refused.
    pub version: u8,
    /// The version of the HELLO it refused.
    pub refused_version: u8,
    pub connection_id: u64,
}

impl VersionRefused {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VERSION_REFUSED_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(self.version);
        out.push(KIND_VERSION_REFUSED);
        out.push(self.refused_version);
        out.push(0);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        push_crc(&mut out);
        out
    }

    /// Parses untrusted bytes of any version; never panics.
    pub fn parse(datagram: &[u8]) -> Result<VersionRefused, HandshakeError> {
        let len = datagram.len();
        if len != VERSION_REFUSED_LEN {
            return Err(HandshakeError::Length { len });
        }
        let (covered, stored) = datagram.split_at(len - CRC_LEN);
        let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if crc32fast::hash(covered) != stored {
            return Err(HandshakeError::BadChecksum);
        }
        if covered[..4] != MAGIC || covered[5] != KIND_VERSION_REFUSED || covered[7] != 0 {
            return Err(HandshakeError::Malformed);
        }
        Ok(VersionRefused {
            version: covered[4],
            refused_version: covered[6],
            connection_id: u64_at(covered, 8),
        })
    }

    /// The refusal of a HELLO of `version` for `connection_id` by this build.
    pub fn of(version: u8, connection_id: u64) -> VersionRefused {
        VersionRefused {
            version: VERSION_SEALED,
            refused_version: version,
            connection_id,
        }
    }

    /// The client's error for this refusal.
    pub fn error(&self) -> HandshakeError {
        HandshakeError::VersionMismatch {
            ours: VERSION_SEALED,
            theirs: self.version,
        }
    }
}

impl HelloAck {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_ACK_LEN);
        prefix(&mut out, KIND_HELLO_ACK, self.connection_id);
        out.extend_from_slice(&self.server_public_key);
        out.extend_from_slice(&self.server_random);
        out.extend_from_slice(&self.confirm);
        push_crc(&mut out);
        out
    }

    /// Parses untrusted bytes; never panics.
    pub fn parse(datagram: &[u8]) -> Result<HelloAck, HandshakeError> {
        if datagram.len() != HELLO_ACK_LEN {
            return Err(HandshakeError::Length {
                len: datagram.len(),
            });
        }
        let b = check(datagram, KIND_HELLO_ACK)?;
        Ok(HelloAck {
            connection_id: u64_at(b, 8),
            server_public_key: array32(b, 16),
            server_random: array32(b, 48),
            confirm: array32(b, 80),
        })
    }
}

fn random32(rng: &dyn SecureRandom) -> Result<[u8; 32], HandshakeError> {
    let mut out = [0u8; 32];
    rng.fill(&mut out).map_err(|_| HandshakeError::Random)?;
    Ok(out)
}

fn ephemeral(
    rng: &dyn SecureRandom,
) -> Result<(agreement::EphemeralPrivateKey, [u8; 32]), HandshakeError> {
    let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, rng)
        .map_err(|_| HandshakeError::Random)?;
    let public = private
        .compute_public_key()
        .map_err(|_| HandshakeError::Random)?;
    let public: [u8; 32] = public
        .as_ref()
        .try_into()
        .map_err(|_| HandshakeError::Random)?;
    Ok((private, public))
}

fn agree(
    private: agreement::EphemeralPrivateKey,
    peer: &[u8; PUBLIC_KEY_LEN],
    psk: &[u8; PSK_LEN],
    transcript: &Transcript,
) -> Result<SessionKeys, HandshakeError> {
    agreement::agree_ephemeral(
        private,
        agreement::UnparsedPublicKey::new(&agreement::X25519, peer),
        HandshakeError::BadPublicKey,
        |secret| Ok(SessionKeys::derive(psk, secret, transcript)),
    )
}

/// The client's side: holds the ephemeral private key until HELLO_ACK arrives. The HELLO bytes
/// are kept so the I/O loop resends the same message on timeout.
pub struct ClientHandshake {
    private: agreement::EphemeralPrivateKey,
    hello: Hello,
    hello_bytes: Vec<u8>,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("connection_id", &self.hello.connection_id)
            .field("volume", &self.hello.volume)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    pub fn start(connection_id: u64, volume: &str) -> Result<ClientHandshake, HandshakeError> {
        let rng = lc_rand::SystemRandom::new();
        let (private, client_public_key) = ephemeral(&rng)?;
        let hello = Hello {
            connection_id,
            client_public_key,
            client_random: random32(&rng)?,
            volume: volume.to_owned(),
        };
        let hello_bytes = hello.encode()?;
        Ok(ClientHandshake {
            private,
            hello,
            hello_bytes,
        })
    }

    /// The HELLO to send (and resend until HELLO_ACK).
    pub fn hello(&self) -> &[u8] {
        &self.hello_bytes
    }

    /// Completes the handshake from a HELLO_ACK: the keys, once the server proved it holds `psk`.
    pub fn finish(
        self,
        datagram: &[u8],
        psk: &[u8; PSK_LEN],
    ) -> Result<SessionKeys, HandshakeError> {
        let ack = HelloAck::parse(datagram)?;
        if ack.connection_id != self.hello.connection_id {
            return Err(HandshakeError::WrongConnection {
                expected: self.hello.connection_id,
                found: ack.connection_id,
            });
        }
        let transcript = Transcript {
            connection_id: ack.connection_id,
            client_public_key: self.hello.client_public_key,
            client_random: self.hello.client_random,
            server_public_key: ack.server_public_key,
            server_random: ack.server_random,
        };
        let keys = agree(self.private, &ack.server_public_key, psk, &transcript)?;
        if !keys.verify_confirm(&ack.confirm) {
            return Err(HandshakeError::BadConfirm);
        }
        Ok(keys)
    }
}

/// The server's side: answers a parsed HELLO for a volume whose PSK it found. Returns the keys
/// and the HELLO_ACK to send. A server should keep the HELLO_ACK and resend it if the same HELLO comes
/// again (the client did not get it) instead of deriving new keys.
pub fn respond(
    hello: &Hello,
    psk: &[u8; PSK_LEN],
) -> Result<(SessionKeys, Vec<u8>), HandshakeError> {
    let rng = lc_rand::SystemRandom::new();
    let (private, server_public_key) = ephemeral(&rng)?;
    let server_random = random32(&rng)?;
    let transcript = Transcript {
        connection_id: hello.connection_id,
        client_public_key: hello.client_public_key,
        client_random: hello.client_random,
        server_public_key,
        server_random,
    };
    let keys = agree(private, &hello.client_public_key, psk, &transcript)?;
    let ack = HelloAck {
        connection_id: hello.connection_id,
        server_public_key,
        server_random,
        confirm: keys.confirm(),
    };
    Ok((keys, ack.encode()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srd::packet::HEADER_LEN;
    use proptest::prelude::*;

    fn header(packet_number: u64, body_len: u16) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4] = VERSION_SEALED;
        h[16..24].copy_from_slice(&packet_number.to_le_bytes());
        h[24..26].copy_from_slice(&body_len.to_le_bytes());
        h
    }

    #[test]
    fn a_handshake_with_the_right_psk_keys_both_sides_alike() {
        let psk = [7u8; 32];
        let client = ClientHandshake::start(42, "vol-a").expect("start");
        let hello = Hello::parse(client.hello()).expect("parse hello");
        assert_eq!(hello.volume, "vol-a");
        let (server_keys, ack) = respond(&hello, &psk).expect("respond");
        let client_keys = client.finish(&ack, &psk).expect("finish");
        let mut d = client_keys
            .client_to_server
            .seal(&header(1, 3), b"abc")
            .expect("seal");
        assert_eq!(
            server_keys.client_to_server.open(&mut d).expect("open").1,
            b"abc"
        );
        let mut d = server_keys
            .server_to_client
            .seal(&header(1, 2), b"ok")
            .expect("seal");
        assert_eq!(
            client_keys.server_to_client.open(&mut d).expect("open").1,
            b"ok"
        );
    }

    #[test]
    fn a_client_with_the_wrong_psk_rejects_the_confirmation() {
        let client = ClientHandshake::start(1, "vol").expect("start");
        let hello = Hello::parse(client.hello()).expect("parse");
        let (_, ack) = respond(&hello, &[1; 32]).expect("respond");
        assert_eq!(
            client.finish(&ack, &[2; 32]).err(),
            Some(HandshakeError::BadConfirm)
        );
    }

    #[test]
    fn a_hello_ack_for_another_connection_is_refused() {
        let client = ClientHandshake::start(1, "vol").expect("start");
        let mut hello = Hello::parse(client.hello()).expect("parse");
        hello.connection_id = 2;
        let (_, ack) = respond(&hello, &[1; 32]).expect("respond");
        assert!(matches!(
            client.finish(&ack, &[1; 32]),
            Err(HandshakeError::WrongConnection { .. })
        ));
    }

    #[test]
    fn hello_offsets_are_pinned() {
        let hello = Hello {
            connection_id: 0x0102_0304_0506_0708,
            client_public_key: [0xaa; 32],
            client_random: [0xbb; 32],
            volume: "v1".into(),
        };
        let b = hello.encode().expect("encode");
        assert_eq!(b.len(), HELLO_FIXED_LEN + 2 + 4);
        assert_eq!(&b[0..4], b"FSRD");
        assert_eq!(b[4], 4);
        assert_eq!(b[5], 5);
        assert_eq!(&b[6..8], &[0, 0]);
        assert_eq!(&b[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[16..48], &[0xaa; 32]);
        assert_eq!(&b[48..80], &[0xbb; 32]);
        assert_eq!(&b[80..82], &2u16.to_le_bytes());
        assert_eq!(&b[82..84], b"v1");
        assert_eq!(&b[84..88], &crc32fast::hash(&b[..84]).to_le_bytes());
        assert_eq!(Hello::parse(&b), Ok(hello));
    }

    #[test]
    fn hello_ack_offsets_are_pinned() {
        let ack = HelloAck {
            connection_id: 9,
            server_public_key: [1; 32],
            server_random: [2; 32],
            confirm: [3; 32],
        };
        let b = ack.encode();
        assert_eq!(b.len(), HELLO_ACK_LEN);
        assert_eq!(&b[0..4], b"FSRD");
        assert_eq!(b[4], 4);
        assert_eq!(b[5], 6);
        assert_eq!(&b[6..8], &[0, 0]);
        assert_eq!(&b[8..16], &9u64.to_le_bytes());
        assert_eq!(&b[16..48], &[1; 32]);
        assert_eq!(&b[48..80], &[2; 32]);
        assert_eq!(&b[80..112], &[3; 32]);
        assert_eq!(&b[112..116], &crc32fast::hash(&b[..112]).to_le_bytes());
        assert_eq!(HelloAck::parse(&b), Ok(ack));
    }

    #[test]
    fn version_refused_offsets_are_pinned() {
        let refused = VersionRefused {
            version: 4,
            refused_version: 2,
            connection_id: 0x0102_0304_0506_0708,
        };
        let b = refused.encode();
        assert_eq!(b.len(), VERSION_REFUSED_LEN);
        assert_eq!(&b[0..4], b"FSRD");
        assert_eq!(b[4], 4, "refusing version");
        assert_eq!(b[5], 8, "kind VERSION_REFUSED");
        assert_eq!(b[6], 2, "refused version");
        assert_eq!(b[7], 0);
        assert_eq!(&b[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[16..20], &crc32fast::hash(&b[..16]).to_le_bytes());
        assert_eq!(VersionRefused::parse(&b), Ok(refused));
        assert_eq!(classify(&b), Incoming::VersionRefused);
        // A refusal from a later version (6, say) reads the same, and names both versions.
        let later = VersionRefused {
            version: 6,
            refused_version: 4,
            connection_id: 1,
        };
        let b = later.encode();
        assert_eq!(classify(&b), Incoming::VersionRefused);
        let parsed = VersionRefused::parse(&b).expect("parse");
        assert_eq!(
            parsed.error(),
            HandshakeError::VersionMismatch { ours: 4, theirs: 6 }
        );
        let mut bad = b.clone();
        bad[7] = 1;
        assert_eq!(
            VersionRefused::parse(&bad),
            Err(HandshakeError::BadChecksum)
        );
        let at = bad.len() - 4;
        let crc = crc32fast::hash(&bad[..at]);
        bad[at..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(VersionRefused::parse(&bad), Err(HandshakeError::Malformed));
        assert!(matches!(
            VersionRefused::parse(&b[..19]),
            Err(HandshakeError::Length { len: 19 })
        ));
    }

    #[test]
    fn a_hello_of_another_version_is_told_apart() {
        let hello = Hello {
            connection_id: 77,
            client_public_key: [5; 32],
            client_random: [6; 32],
            volume: "ab".into(),
        };
        let mut b = hello.encode().expect("encode");
        assert_eq!(classify(&b), Incoming::Hello);
        for old in [2u8, 3, 5, 200] {
            b[4] = old;
            assert_eq!(
                classify(&b),
                Incoming::HelloOtherVersion {
                    version: old,
                    connection_id: 77
                },
                "version {old}"
            );
            assert!(Hello::parse(&b).is_err(), "never parsed as ours");
        }
        // Version 1 had no handshake: its kind 5 is nothing.
        b[4] = 1;
        assert_eq!(classify(&b), Incoming::Other);
    }

    #[test]
    fn volume_names_are_bounded() {
        let mut hello = Hello {
            connection_id: 1,
            client_public_key: [0; 32],
            client_random: [0; 32],
            volume: String::new(),
        };
        assert!(hello.encode().is_err());
        hello.volume = "x".repeat(VOLUME_NAME_LEN_MAX + 1);
        assert!(hello.encode().is_err());
        hello.volume = "x".repeat(VOLUME_NAME_LEN_MAX);
        let b = hello.encode().expect("encode");
        assert_eq!(b.len(), HELLO_LEN_MAX);
        assert_eq!(Hello::parse(&b).map(|h| h.volume.len()), Ok(255));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parsers(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let _ = Hello::parse(&bytes);
            let _ = HelloAck::parse(&bytes);
            let _ = VersionRefused::parse(&bytes);
            let _ = classify(&bytes);
        }

        /// Corrupting any byte of a valid HELLO is caught (by the CRC or a bound).
        #[test]
        fn a_corrupted_hello_is_refused(at in 0usize..88, xor in 1u8..=255) {
            let hello = Hello {
                connection_id: 3,
                client_public_key: [5; 32],
                client_random: [6; 32],
                volume: "ab".into(),
            };
            let mut b = hello.encode().expect("encode");
            b[at] ^= xor;
            prop_assert!(Hello::parse(&b).is_err());
        }
    }
}
