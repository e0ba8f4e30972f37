//! Sealing SRD packets (format version 4): the key schedule of a session and AES-256-GCM over
//! each packet.
//!
//! A sealed datagram is the 28-byte common header of `packet.rs`, the body encrypted, and a
//! 16-byte tag where version 1 has its CRC. The header is the associated data, so a flipped bit
//! anywhere in the datagram fails the tag. The nonce is 4 bytes of direction and the 8-byte packet
//! number from the header: each direction has its own key and its own packet numbers, which never
//! repeat, so a (key, nonce) pair is never used twice. A sender refuses packet numbers at or past
//! `PACKET_NUMBER_LIMIT` instead of wrapping (there is no rekey; a session that long reconnects).
//!
//! Keys: HKDF-SHA256 with the pre-shared key (the volume's credential hash) as salt and the
//! X25519 shared secret of the handshake as input, and info binding the protocol label, the
//! connection id, both public keys and both randoms. Knowing the shared secret alone (an attacker
//! in the middle of the key exchange) gives nothing without the PSK, and knowing the PSK alone
//! gives nothing of a recorded session without one ephemeral private key.

use aws_lc_rs::{aead, hkdf, hmac};
use zeroize::Zeroizing;

use super::handshake::VERSION_SEALED;
use super::packet::{HEADER_LEN, MAGIC, TRAILER_LEN, VERSION};

/// Bytes of the AEAD tag that replaces the CRC trailer.
pub const TAG_LEN: usize = 16;
/// Bytes of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of each side's handshake random.
pub const RANDOM_LEN: usize = 32;
/// Bytes of the pre-shared key (a SHA-256 credential hash).
pub const PSK_LEN: usize = 32;
/// Bytes of the server's handshake confirmation (HMAC-SHA256).
pub const CONFIRM_LEN: usize = 32;
/// Packet numbers at or above this are never sealed: far beyond any session (2^48 packets is
/// over a petabyte of 4 KiB blocks) and well inside the nonce's 64 bits.
pub const PACKET_NUMBER_LIMIT: u64 = 1 << 48;
/// The protocol label at the start of the HKDF info and the confirmation transcript.
pub const LABEL: &[u8] = b"ferrite-srd v4";

const KEY_LEN: usize = 32;

/// The pre-shared key of a credential: its SHA-256, which is also all the server stores of it.
pub fn psk_of(credential: &[u8]) -> [u8; PSK_LEN] {
    let mut out = [0u8; PSK_LEN];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, credential).as_ref());
    out
}
const PACKET_NUMBER_AT: usize = 16;
const BODY_LEN_AT: usize = 24;

/// Which way a packet goes; part of every nonce so the two directions never share one even if
/// they shared a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn nonce_prefix(self) -> [u8; 4] {
        match self {
            Direction::ClientToServer => *b"c2s\0",
            Direction::ServerToClient => *b"s2c\0",
        }
    }
}

/// Everything the keys of a session are bound to, in the order the HKDF info and the
/// confirmation transcript hash it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcript {
    pub connection_id: u64,
    pub client_public_key: [u8; PUBLIC_KEY_LEN],
    pub client_random: [u8; RANDOM_LEN],
    pub server_public_key: [u8; PUBLIC_KEY_LEN],
    pub server_random: [u8; RANDOM_LEN],
}

impl Transcript {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LABEL.len() + 8 + 2 * (PUBLIC_KEY_LEN + RANDOM_LEN));
        out.extend_from_slice(LABEL);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.client_public_key);
        out.extend_from_slice(&self.client_random);
        out.extend_from_slice(&self.server_public_key);
        out.extend_from_slice(&self.server_random);
        out
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The keys of one session, both directions. Raw key bytes live only inside this function's
/// zeroized buffers and aws-lc's key objects; `Debug` prints nothing of them.
pub struct SessionKeys {
    pub client_to_server: Sealer,
    pub server_to_client: Sealer,
    confirm: hmac::Key,
    transcript: Vec<u8>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys").finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Derives the session's keys from the PSK and the X25519 shared secret.
    pub fn derive(
        psk: &[u8; PSK_LEN],
        shared_secret: &[u8],
        transcript: &Transcript,
    ) -> SessionKeys {
        let transcript = transcript.bytes();
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, psk).extract(shared_secret);
        let expand = |purpose: &[u8]| {
            let mut out = Zeroizing::new([0u8; KEY_LEN]);
            let info = [transcript.as_slice(), purpose];
            // expand fails only for an output longer than 255 hash lengths; 32 bytes is not.
            prk.expand(&info, Len(KEY_LEN))
                .and_then(|okm| okm.fill(out.as_mut_slice()))
                .expect("HKDF-SHA256 expands 32 bytes");
            out
        };
        let c2s = expand(b" key c2s");
        let s2c = expand(b" key s2c");
        let confirm = expand(b" confirm");
        SessionKeys {
            client_to_server: Sealer::new(&c2s, Direction::ClientToServer),
            server_to_client: Sealer::new(&s2c, Direction::ServerToClient),
            confirm: hmac::Key::new(hmac::HMAC_SHA256, confirm.as_slice()),
            transcript,
        }
    }

    /// The server's proof that it holds the PSK, sent in HELLO_ACK.
    pub fn confirm(&self) -> [u8; CONFIRM_LEN] {
        let tag = hmac::sign(&self.confirm, &self.transcript);
        let mut out = [0u8; CONFIRM_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Checks a HELLO_ACK confirmation in constant time.
    pub fn verify_confirm(&self, confirm: &[u8]) -> bool {
        hmac::verify(&self.confirm, &self.transcript, confirm).is_ok()
    }
}

/// Why a sealed datagram was dropped. `Truncated`/`LengthMismatch` are counted apart from
/// `Forged` (the tag failed) so an operator can tell a broken path from an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed datagram of {len} bytes is shorter than header and tag")]
    Truncated { len: usize },
    #[error("body length {body_len} does not match a sealed datagram of {len} bytes")]
    LengthMismatch { body_len: usize, len: usize },
    #[error("authentication tag does not verify")]
    Forged,
    #[error("not a sealed (version 4, key epoch 1) packet")]
    NotSealed,
}

/// The key epoch byte (header offset 7) of a sealed packet; 0 means unsealed (version 1).
pub const KEY_EPOCH_SEALED: u8 = 1;
const VERSION_AT: usize = 4;
const KEY_EPOCH_AT: usize = 7;

/// Why a packet was not sealed; a bug or a session that must reconnect, never bad input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("packet number {packet_number} is at or past the limit {PACKET_NUMBER_LIMIT}")]
    PacketNumberExhausted { packet_number: u64 },
    #[error("body of {len} bytes does not match the header's body length {body_len}")]
    BodyLength { len: usize, body_len: usize },
}

/// AES-256-GCM for one direction of one session: seals on the sending side, opens on the
/// receiving side with the same key.
pub struct Sealer {
    key: aead::LessSafeKey,
    direction: Direction,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    fn new(key: &[u8; KEY_LEN], direction: Direction) -> Sealer {
        // AES-256-GCM takes any 32-byte key.
        let unbound =
            aead::UnboundKey::new(&aead::AES_256_GCM, key).expect("a 32-byte AES-256-GCM key");
        Sealer {
            key: aead::LessSafeKey::new(unbound),
            direction,
        }
    }

    fn nonce(&self, packet_number: u64) -> aead::Nonce {
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce[..4].copy_from_slice(&self.direction.nonce_prefix());
        nonce[4..].copy_from_slice(&packet_number.to_le_bytes());
        aead::Nonce::assume_unique_for_key(nonce)
    }

    /// Seals `body` under `header` (whose packet number and body length the caller set) into a
    /// datagram: header, ciphertext, tag.
    pub fn seal(&self, header: &[u8; HEADER_LEN], body: &[u8]) -> Result<Vec<u8>, SealError> {
        let packet_number = header_u64(header, PACKET_NUMBER_AT);
        if packet_number >= PACKET_NUMBER_LIMIT {
            return Err(SealError::PacketNumberExhausted { packet_number });
        }
        let body_len = usize::from(u16::from_le_bytes([
            header[BODY_LEN_AT],
            header[BODY_LEN_AT + 1],
        ]));
        if body.len() != body_len {
            return Err(SealError::BodyLength {
                len: body.len(),
                body_len,
            });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
        out.extend_from_slice(header);
        out.extend_from_slice(body);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(packet_number),
                aead::Aad::from(header),
                &mut out[HEADER_LEN..],
            )
            // Fails only for inputs past GCM's 64 GiB limit; a body is at most 64 KiB.
            .expect("AES-256-GCM seals a body under 64 KiB");
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Authenticates and decrypts a sealed datagram in place; returns the header's packet number
    /// and the plaintext body. Arbitrary bytes give an error, never a panic.
    pub fn open<'a>(&self, datagram: &'a mut [u8]) -> Result<(u64, &'a [u8]), OpenError> {
        let len = datagram.len();
        if len < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated { len });
        }
        let (header, sealed) = datagram.split_at_mut(HEADER_LEN);
        let body_len = usize::from(u16::from_le_bytes([
            header[BODY_LEN_AT],
            header[BODY_LEN_AT + 1],
        ]));
        if sealed.len() < body_len + TAG_LEN {
            return Err(OpenError::Truncated { len });
        }
        if sealed.len() != body_len + TAG_LEN {
            return Err(OpenError::LengthMismatch { body_len, len });
        }
        let packet_number = header_u64(header, PACKET_NUMBER_AT);
        let body = self
            .key
            .open_in_place(self.nonce(packet_number), aead::Aad::from(&*header), sealed)
            .map_err(|_| OpenError::Forged)?;
        Ok((packet_number, body))
    }
}

impl Sealer {
    /// Seals an encoded version-1 datagram (`packet::Packet::encode`): the header becomes
    /// version 4 with key epoch 1, the CRC trailer is replaced by the tag. Connections build
    /// packets with the v1 encoder and seal them on the way out, so one encoder serves both.
    pub fn seal_v1(&self, v1: &[u8]) -> Result<Vec<u8>, SealError> {
        let len = v1.len();
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(SealError::BodyLength { len, body_len: 0 });
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&v1[..HEADER_LEN]);
        header[VERSION_AT] = VERSION_SEALED;
        header[KEY_EPOCH_AT] = KEY_EPOCH_SEALED;
        self.seal(&header, &v1[HEADER_LEN..len - TRAILER_LEN])
    }

    /// Opens a sealed datagram back into the version-1 datagram it was sealed from (with a fresh
    /// CRC), for `packet::parse`; returns its packet number too, for the replay window.
    pub fn open_to_v1(&self, datagram: &[u8]) -> Result<(u64, Vec<u8>), OpenError> {
        if datagram.len() >= HEADER_LEN
            && (datagram[..4] != MAGIC
                || datagram[VERSION_AT] != VERSION_SEALED
                || datagram[KEY_EPOCH_AT] != KEY_EPOCH_SEALED)
        {
            return Err(OpenError::NotSealed);
        }
        let mut buf = datagram.to_vec();
        let (packet_number, body_len) = {
            let (pn, body) = self.open(&mut buf)?;
            (pn, body.len())
        };
        buf.truncate(HEADER_LEN + body_len);
        buf[VERSION_AT] = VERSION;
        buf[KEY_EPOCH_AT] = 0;
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        Ok((packet_number, buf))
    }
}

fn header_u64(header: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn transcript(connection_id: u64) -> Transcript {
        Transcript {
            connection_id,
            client_public_key: [1; 32],
            client_random: [2; 32],
            server_public_key: [3; 32],
            server_random: [4; 32],
        }
    }

    fn header(packet_number: u64, body_len: u16) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(b"FSRD");
        h[4] = 4;
        h[5] = 1;
        h[7] = 1;
        h[8..16].copy_from_slice(&7u64.to_le_bytes());
        h[16..24].copy_from_slice(&packet_number.to_le_bytes());
        h[24..26].copy_from_slice(&body_len.to_le_bytes());
        h
    }

    fn keys(psk: u8) -> SessionKeys {
        SessionKeys::derive(&[psk; 32], &[9; 32], &transcript(7))
    }

    #[test]
    fn a_sealed_packet_opens_with_the_same_keys_and_hides_its_body() {
        let (a, b) = (keys(5), keys(5));
        let body = b"block payload".to_vec();
        let mut datagram = a
            .client_to_server
            .seal(&header(3, body.len() as u16), &body)
            .expect("seal");
        assert_eq!(datagram.len(), HEADER_LEN + body.len() + TAG_LEN);
        assert_ne!(
            &datagram[HEADER_LEN..HEADER_LEN + body.len()],
            body.as_slice()
        );
        let (packet_number, opened) = b.client_to_server.open(&mut datagram).expect("open");
        assert_eq!(packet_number, 3);
        assert_eq!(opened, body.as_slice());
    }

    #[test]
    fn every_flipped_bit_fails_the_tag() {
        let k = keys(5);
        let body = [0xabu8; 40];
        let datagram = k
            .server_to_client
            .seal(&header(9, 40), &body)
            .expect("seal");
        for bit in 0..datagram.len() * 8 {
            let mut d = datagram.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            let got = k.server_to_client.open(&mut d);
            // A flip in the body length is caught by the length check before the tag.
            assert!(got.is_err(), "bit {bit} accepted");
            if !(BODY_LEN_AT * 8..(BODY_LEN_AT + 2) * 8).contains(&bit) {
                assert_eq!(got, Err(OpenError::Forged), "bit {bit}");
            }
        }
    }

    #[test]
    fn another_psk_direction_or_connection_does_not_open() {
        let k = keys(5);
        let body = [1u8; 16];
        let datagram = k
            .client_to_server
            .seal(&header(1, 16), &body)
            .expect("seal");
        let other_psk = keys(6);
        let other_connection = SessionKeys::derive(&[5; 32], &[9; 32], &transcript(8));
        for (name, sealer) in [
            ("psk", &other_psk.client_to_server),
            ("direction", &k.server_to_client),
            ("connection", &other_connection.client_to_server),
        ] {
            let mut d = datagram.clone();
            assert_eq!(sealer.open(&mut d), Err(OpenError::Forged), "{name}");
        }
    }

    #[test]
    fn truncated_and_padded_datagrams_are_told_apart_from_forged_ones() {
        let k = keys(5);
        let datagram = k
            .client_to_server
            .seal(&header(1, 16), &[0; 16])
            .expect("seal");
        for len in 0..datagram.len() {
            let mut d = datagram[..len].to_vec();
            assert!(
                matches!(
                    k.client_to_server.open(&mut d),
                    Err(OpenError::Truncated { .. })
                ),
                "len {len}"
            );
        }
        let mut padded = datagram.clone();
        padded.push(0);
        assert!(matches!(
            k.client_to_server.open(&mut padded),
            Err(OpenError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn packet_numbers_past_the_limit_are_refused() {
        let k = keys(5);
        assert!(
            k.client_to_server
                .seal(&header(PACKET_NUMBER_LIMIT - 1, 0), &[])
                .is_ok()
        );
        assert_eq!(
            k.client_to_server
                .seal(&header(PACKET_NUMBER_LIMIT, 0), &[]),
            Err(SealError::PacketNumberExhausted {
                packet_number: PACKET_NUMBER_LIMIT
            })
        );
        assert!(matches!(
            k.client_to_server.seal(&header(1, 3), &[0; 2]),
            Err(SealError::BodyLength { .. })
        ));
    }

    #[test]
    fn the_confirmation_proves_the_same_psk_and_transcript() {
        let k = keys(5);
        let confirm = k.confirm();
        assert!(keys(5).verify_confirm(&confirm));
        assert!(!keys(6).verify_confirm(&confirm));
        let other = SessionKeys::derive(&[5; 32], &[9; 32], &transcript(8));
        assert!(!other.verify_confirm(&confirm));
        assert!(!k.verify_confirm(&confirm[..31]));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let text = format!("{:?}", keys(5));
        assert_eq!(text, "SessionKeys { .. }");
        assert!(format!("{:?}", keys(5).client_to_server).starts_with("Sealer { direction"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_open(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let k = keys(5);
            let mut d = bytes;
            prop_assert!(k.client_to_server.open(&mut d).is_err());
        }
    }
}
