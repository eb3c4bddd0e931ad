//! Signed firmware images for OTA.
//!
//! An upload file is a 128-byte **manifest** followed by the raw application
//! image (what `espflash save-image` produces, written to the OTA slot as is).
//! The manifest comes first so a device can refuse a wrong board, a downgrade
//! or a bad signature before it erases or writes any flash.
//!
//! Manifest layout (little-endian):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `OFMF` |
//! | 4 | 2 | format version, `1` |
//! | 6 | 2 | reserved, zero |
//! | 8 | 4 | image size in bytes (`u32`) |
//! | 12 | 2 | firmware version major (`u16`) |
//! | 14 | 2 | firmware version minor (`u16`) |
//! | 16 | 2 | firmware version patch (`u16`) |
//! | 18 | 2 | reserved, zero |
//! | 20 | 12 | board, ASCII `[a-z0-9_-]`, 1–12 chars, NUL-padded (`esp32c3`) |
//! | 32 | 32 | SHA-256 of the image |
//! | 64 | 64 | ed25519 signature of `SHA-256(bytes 0..64)` |
//!
//! Firmware versions are semver-like triples `major.minor.patch` (the crate
//! version of the firmware), ordered lexicographically; a device accepts only a
//! version strictly greater than the one it runs. The device holds only the
//! 32-byte ed25519 public key; the secret key stays with the operator
//! (feature `sign`, used by `ofmon sign-firmware`).
//!
//! On the device, feed the HTTP body to an [`OtaReceiver`]: it buffers and
//! checks the manifest, then hands back the image bytes to write, hashing them
//! as they pass; [`OtaReceiver::finish`] refuses a truncated or altered image.

use core::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::hex;

/// Manifest magic.
pub const MAGIC: [u8; 4] = *b"OFMF";
/// Manifest format version written and understood by this crate.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the signed part of the manifest.
pub const MANIFEST_FIELDS_LEN: usize = 64;
/// Size of the whole manifest (fields + signature) at the start of an upload.
pub const MANIFEST_LEN: usize = MANIFEST_FIELDS_LEN + 64;
/// Longest board name.
pub const MAX_BOARD_LEN: usize = 12;

/// Why an OTA upload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtaError {
    /// The upload ended before the manifest or the image was complete.
    Truncated,
    /// Not an OFMon firmware upload (wrong magic).
    BadMagic,
    /// A manifest format this firmware does not understand.
    UnsupportedFormat(u16),
    /// The manifest is signed correctly but a field is invalid (reserved bytes
    /// not zero, board not `[a-z0-9_-]{1,12}`).
    BadManifest,
    /// The signature does not verify with the device's public key.
    BadSignature,
    /// The 32 bytes are not a valid ed25519 public key.
    BadPublicKey,
    /// The image is built for another board.
    WrongBoard,
    /// The offered version is not newer than the running one.
    NotNewer {
        /// Version the device runs.
        running: FirmwareVersion,
        /// Version in the manifest.
        offered: FirmwareVersion,
    },
    /// The image is larger than the manifest says, or than the OTA slot.
    TooLarge,
    /// The image's SHA-256 differs from the manifest's.
    DigestMismatch,
}

impl fmt::Display for OtaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtaError::Truncated => f.write_str("upload truncated"),
            OtaError::BadMagic => f.write_str("not an OFMon firmware upload"),
            OtaError::UnsupportedFormat(v) => write!(f, "unsupported manifest format {v}"),
            OtaError::BadManifest => f.write_str("invalid manifest field"),
            OtaError::BadSignature => f.write_str("bad firmware signature"),
            OtaError::BadPublicKey => f.write_str("invalid firmware public key"),
            OtaError::WrongBoard => f.write_str("firmware is for another board"),
            OtaError::NotNewer { running, offered } => {
                write!(f, "firmware {offered} is not newer than running {running}")
            }
            OtaError::TooLarge => f.write_str("image larger than declared or than the slot"),
            OtaError::DigestMismatch => f.write_str("image digest mismatch"),
        }
    }
}
crate::std_error!(OtaError);

/// A firmware version `major.minor.patch`, ordered lexicographically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FirmwareVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

impl FirmwareVersion {
    /// `major.minor.patch`.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Error parsing a [`FirmwareVersion`] from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionParseError;

impl fmt::Display for VersionParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("version must be MAJOR.MINOR.PATCH with numbers 0-65535")
    }
}
crate::std_error!(VersionParseError);

impl core::str::FromStr for FirmwareVersion {
    type Err = VersionParseError;
    /// Parses `1.2.3` (a leading `v` is allowed; nothing after the patch).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut it = s.split('.');
        let mut next = || -> Result<u16, VersionParseError> {
            let p = it.next().ok_or(VersionParseError)?;
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(VersionParseError);
            }
            p.parse().map_err(|_| VersionParseError)
        };
        let v = FirmwareVersion::new(next()?, next()?, next()?);
        if it.next().is_some() {
            return Err(VersionParseError);
        }
        Ok(v)
    }
}

impl serde::Serialize for FirmwareVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for FirmwareVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: alloc::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A board name: 1–12 characters from `[a-z0-9_-]`, e.g. `esp32c3`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Board {
    bytes: [u8; MAX_BOARD_LEN],
    len: u8,
}

impl Board {
    /// Validates a board name.
    pub fn new(name: &str) -> Result<Self, OtaError> {
        let b = name.as_bytes();
        let ok_char =
            |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-';
        if b.is_empty() || b.len() > MAX_BOARD_LEN || !b.iter().all(ok_char) {
            return Err(OtaError::BadManifest);
        }
        let mut bytes = [0u8; MAX_BOARD_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Self {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    fn from_padded(field: &[u8; MAX_BOARD_LEN]) -> Result<Self, OtaError> {
        let len = field.iter().position(|&c| c == 0).unwrap_or(MAX_BOARD_LEN);
        if field[len..].iter().any(|&c| c != 0) {
            return Err(OtaError::BadManifest);
        }
        let name = core::str::from_utf8(&field[..len]).map_err(|_| OtaError::BadManifest)?;
        Board::new(name)
    }
}

impl fmt::Debug for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Board({:?})", self.as_str())
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed description of a firmware image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Board the image is built for.
    pub board: Board,
    /// Firmware version of the image.
    pub version: FirmwareVersion,
    /// Image size in bytes (the manifest itself not included).
    pub image_size: u32,
    /// SHA-256 of the image.
    pub image_sha256: [u8; 32],
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl Manifest {
    /// The 64 signed bytes (layout in the module docs).
    pub fn encode_fields(&self) -> [u8; MANIFEST_FIELDS_LEN] {
        let mut out = [0u8; MANIFEST_FIELDS_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[8..12].copy_from_slice(&self.image_size.to_le_bytes());
        out[12..14].copy_from_slice(&self.version.major.to_le_bytes());
        out[14..16].copy_from_slice(&self.version.minor.to_le_bytes());
        out[16..18].copy_from_slice(&self.version.patch.to_le_bytes());
        out[20..32].copy_from_slice(&self.board.bytes);
        out[32..64].copy_from_slice(&self.image_sha256);
        out
    }

    /// Decodes the fields of a manifest **without checking its signature**
    /// (for tools that display an upload file; devices use
    /// [`verify_manifest`] or [`OtaReceiver`]). Returns the manifest and the
    /// signature bytes.
    pub fn decode_unverified(bytes: &[u8]) -> Result<(Manifest, [u8; 64]), OtaError> {
        let (fields, sig) = split_header(bytes)?;
        Ok((decode_fields(fields)?, sig))
    }
}

fn split_header(bytes: &[u8]) -> Result<(&[u8; MANIFEST_FIELDS_LEN], [u8; 64]), OtaError> {
    let header = bytes.get(..MANIFEST_LEN).ok_or(OtaError::Truncated)?;
    if header[0..4] != MAGIC {
        return Err(OtaError::BadMagic);
    }
    let format = le16(header, 4);
    if format != FORMAT_VERSION {
        return Err(OtaError::UnsupportedFormat(format));
    }
    let fields: &[u8; MANIFEST_FIELDS_LEN] = header[..MANIFEST_FIELDS_LEN]
        .try_into()
        .map_err(|_| OtaError::Truncated)?;
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&header[MANIFEST_FIELDS_LEN..]);
    Ok((fields, sig))
}

fn decode_fields(f: &[u8; MANIFEST_FIELDS_LEN]) -> Result<Manifest, OtaError> {
    if f[6..8] != [0, 0] || f[18..20] != [0, 0] {
        return Err(OtaError::BadManifest);
    }
    let mut board = [0u8; MAX_BOARD_LEN];
    board.copy_from_slice(&f[20..32]);
    let mut image_sha256 = [0u8; 32];
    image_sha256.copy_from_slice(&f[32..64]);
    Ok(Manifest {
        board: Board::from_padded(&board)?,
        version: FirmwareVersion::new(le16(f, 12), le16(f, 14), le16(f, 16)),
        image_size: u32::from_le_bytes([f[8], f[9], f[10], f[11]]),
        image_sha256,
    })
}

/// The ed25519 public key a device trusts for firmware.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FirmwarePublicKey(VerifyingKey);

impl FirmwarePublicKey {
    /// From the 32-byte compressed point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, OtaError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| OtaError::BadPublicKey)?;
        if key.is_weak() {
            return Err(OtaError::BadPublicKey);
        }
        Ok(Self(key))
    }
    /// From 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self, OtaError> {
        let b = hex::decode_array::<32>(s.trim()).map_err(|_| OtaError::BadPublicKey)?;
        Self::from_bytes(&b)
    }
    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// Lower-case hex of the key bytes.
    pub fn to_hex(&self) -> alloc::string::String {
        hex::encode(self.0.as_bytes())
    }
}

impl fmt::Debug for FirmwarePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirmwarePublicKey({})", self.to_hex())
    }
}

/// Checks a manifest (the first [`MANIFEST_LEN`] bytes of `bytes`; more may
/// follow): magic and format, signature, fields, board, and that the version
/// is strictly newer than `running`. Does not look at the image.
pub fn verify_manifest(
    key: &FirmwarePublicKey,
    bytes: &[u8],
    running: FirmwareVersion,
    board: &str,
) -> Result<Manifest, OtaError> {
    let (fields, sig) = split_header(bytes)?;
    let digest: [u8; 32] = Sha256::digest(fields).into();
    key.0
        .verify_strict(&digest, &Signature::from_bytes(&sig))
        .map_err(|_| OtaError::BadSignature)?;
    let m = decode_fields(fields)?;
    if m.board.as_str() != board {
        return Err(OtaError::WrongBoard);
    }
    if m.version <= running {
        return Err(OtaError::NotNewer {
            running,
            offered: m.version,
        });
    }
    Ok(m)
}

/// Hashes an image as it streams in and checks its size and digest at the end.
#[derive(Clone)]
pub struct ImageVerifier {
    hasher: Sha256,
    received: u32,
    expected_size: u32,
    expected_sha256: [u8; 32],
}

impl ImageVerifier {
    /// Expects the image described by `manifest`.
    pub fn new(manifest: &Manifest) -> Self {
        Self {
            hasher: Sha256::new(),
            received: 0,
            expected_size: manifest.image_size,
            expected_sha256: manifest.image_sha256,
        }
    }
    /// Feeds the next bytes; refuses more than the declared size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), OtaError> {
        let n = u32::try_from(chunk.len()).map_err(|_| OtaError::TooLarge)?;
        let total = self.received.checked_add(n).ok_or(OtaError::TooLarge)?;
        if total > self.expected_size {
            return Err(OtaError::TooLarge);
        }
        self.hasher.update(chunk);
        self.received = total;
        Ok(())
    }
    /// Bytes received so far.
    pub fn received(&self) -> u32 {
        self.received
    }
    /// Checks that the whole image arrived and matches the digest.
    pub fn finish(self) -> Result<(), OtaError> {
        if self.received < self.expected_size {
            return Err(OtaError::Truncated);
        }
        let got: [u8; 32] = self.hasher.finalize().into();
        if bool::from(got.ct_eq(&self.expected_sha256)) {
            Ok(())
        } else {
            Err(OtaError::DigestMismatch)
        }
    }
}

enum RxState {
    Header {
        buf: [u8; MANIFEST_LEN],
        len: usize,
    },
    Image {
        manifest: Manifest,
        image: ImageVerifier,
    },
    Failed(OtaError),
}

/// Device side of `POST /api/v1/ota`, sans-IO: push the body chunk by chunk;
/// each call returns the bytes to write to the inactive OTA slot next (empty
/// while the manifest is still arriving). Activate the slot only after
/// [`OtaReceiver::finish`] succeeds. After an error every further call
/// returns the same error.
pub struct OtaReceiver {
    key: FirmwarePublicKey,
    running: FirmwareVersion,
    board: Board,
    max_image_size: u32,
    state: RxState,
}

impl OtaReceiver {
    /// A receiver for a device running `running` on `board`, trusting `key`,
    /// whose OTA slot holds `max_image_size` bytes. A `board` that is not a
    /// valid board name refuses every upload with [`OtaError::WrongBoard`].
    pub fn new(
        key: FirmwarePublicKey,
        running: FirmwareVersion,
        board: &str,
        max_image_size: u32,
    ) -> Self {
        let (board, state) = match Board::new(board) {
            Ok(b) => (
                b,
                RxState::Header {
                    buf: [0; MANIFEST_LEN],
                    len: 0,
                },
            ),
            Err(_) => (
                Board {
                    bytes: [0; MAX_BOARD_LEN],
                    len: 0,
                },
                RxState::Failed(OtaError::WrongBoard),
            ),
        };
        Self {
            key,
            running,
            board,
            max_image_size,
            state,
        }
    }

    /// The verified manifest, once it has arrived (e.g. to erase the slot).
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.state {
            RxState::Image { manifest, .. } => Some(manifest),
            _ => None,
        }
    }

    /// Feeds the next chunk of the upload; returns the image bytes in it.
    pub fn push<'a>(&mut self, mut chunk: &'a [u8]) -> Result<&'a [u8], OtaError> {
        let result = self.push_inner(&mut chunk);
        if let Err(e) = result {
            self.state = RxState::Failed(e);
        }
        result.map(|()| chunk)
    }

    fn push_inner(&mut self, chunk: &mut &[u8]) -> Result<(), OtaError> {
        if let RxState::Header { buf, len } = &mut self.state {
            let take = (MANIFEST_LEN - *len).min(chunk.len());
            buf[*len..*len + take].copy_from_slice(&chunk[..take]);
            *len += take;
            *chunk = &chunk[take..];
            if *len < MANIFEST_LEN {
                return Ok(());
            }
            let manifest = verify_manifest(&self.key, &buf[..], self.running, self.board.as_str())?;
            if manifest.image_size > self.max_image_size {
                return Err(OtaError::TooLarge);
            }
            self.state = RxState::Image {
                image: ImageVerifier::new(&manifest),
                manifest,
            };
        }
        match &mut self.state {
            RxState::Image { image, .. } => image.update(chunk),
            RxState::Failed(e) => Err(*e),
            RxState::Header { .. } => Ok(()),
        }
    }

    /// Ends the upload: returns the manifest if the manifest was valid and
    /// the complete image matches it.
    pub fn finish(self) -> Result<Manifest, OtaError> {
        match self.state {
            RxState::Header { .. } => Err(OtaError::Truncated),
            RxState::Failed(e) => Err(e),
            RxState::Image { manifest, image } => image.finish().map(|()| manifest),
        }
    }
}

#[cfg(any(feature = "sign", test))]
mod sign {
    use super::*;
    use alloc::vec::Vec;
    use ed25519_dalek::{Signer as _, SigningKey};

    /// The operator's firmware signing key (feature `sign`; never on a device).
    pub struct FirmwareSigningKey(SigningKey);

    impl FirmwareSigningKey {
        /// The key for a 32-byte secret seed (generate it from the OS RNG and
        /// keep it as 64 hex digits).
        pub fn from_seed(seed: &[u8; 32]) -> Self {
            Self(SigningKey::from_bytes(seed))
        }
        /// The seed, for saving the key.
        pub fn to_seed(&self) -> [u8; 32] {
            self.0.to_bytes()
        }
        /// The public key to build into the firmware.
        pub fn public_key(&self) -> FirmwarePublicKey {
            FirmwarePublicKey(self.0.verifying_key())
        }
        /// Signs a manifest, returning its [`MANIFEST_LEN`] bytes.
        pub fn sign_manifest(&self, manifest: &Manifest) -> [u8; MANIFEST_LEN] {
            let fields = manifest.encode_fields();
            let digest: [u8; 32] = Sha256::digest(fields).into();
            let sig = self.0.sign(&digest).to_bytes();
            let mut out = [0u8; MANIFEST_LEN];
            out[..MANIFEST_FIELDS_LEN].copy_from_slice(&fields);
            out[MANIFEST_FIELDS_LEN..].copy_from_slice(&sig);
            out
        }
        /// Builds the upload file: signed manifest followed by `image`.
        pub fn sign_image(
            &self,
            image: &[u8],
            version: FirmwareVersion,
            board: &str,
        ) -> Result<Vec<u8>, OtaError> {
            let manifest = Manifest {
                board: Board::new(board)?,
                version,
                image_size: u32::try_from(image.len()).map_err(|_| OtaError::TooLarge)?,
                image_sha256: Sha256::digest(image).into(),
            };
            let mut out = Vec::with_capacity(MANIFEST_LEN + image.len());
            out.extend_from_slice(&self.sign_manifest(&manifest));
            out.extend_from_slice(image);
            Ok(out)
        }
    }

    impl fmt::Debug for FirmwareSigningKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("FirmwareSigningKey(<redacted>)")
        }
    }

    /// Builds the upload file for `image` (see [`FirmwareSigningKey::sign_image`]).
    pub fn sign_image(
        key: &FirmwareSigningKey,
        image: &[u8],
        version: FirmwareVersion,
        board: &str,
    ) -> Result<Vec<u8>, OtaError> {
        key.sign_image(image, version, board)
    }
}

#[cfg(any(feature = "sign", test))]
pub use sign::{FirmwareSigningKey, sign_image};

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const V1: FirmwareVersion = FirmwareVersion::new(1, 0, 0);
    const V2: FirmwareVersion = FirmwareVersion::new(1, 1, 0);
    const SLOT: u32 = 1 << 20;

    fn key() -> FirmwareSigningKey {
        FirmwareSigningKey::from_seed(&[9; 32])
    }

    fn image(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn upload(img: &[u8], v: FirmwareVersion, board: &str) -> Vec<u8> {
        sign_image(&key(), img, v, board).unwrap()
    }

    fn receive(file: &[u8], chunk: usize) -> Result<(Manifest, Vec<u8>), OtaError> {
        let mut rx = OtaReceiver::new(key().public_key(), V1, "esp32c3", SLOT);
        let mut written = Vec::new();
        for c in file.chunks(chunk.max(1)) {
            written.extend_from_slice(rx.push(c)?);
        }
        rx.finish().map(|m| (m, written))
    }

    #[test]
    fn layout_is_as_documented() {
        let img = image(1000);
        let file = upload(&img, FirmwareVersion::new(2, 3, 4), "esp32c3");
        assert_eq!(file.len(), MANIFEST_LEN + 1000);
        assert_eq!(&file[0..4], b"OFMF");
        assert_eq!(&file[4..8], &[1, 0, 0, 0]);
        assert_eq!(&file[8..12], &1000u32.to_le_bytes());
        assert_eq!(&file[12..20], &[2, 0, 3, 0, 4, 0, 0, 0]);
        assert_eq!(&file[20..32], b"esp32c3\0\0\0\0\0");
        assert_eq!(&file[32..64], &Sha256::digest(&img)[..]);
        assert_eq!(&file[MANIFEST_LEN..], &img[..]);
        let (m, _) = Manifest::decode_unverified(&file).unwrap();
        assert_eq!(m.version, FirmwareVersion::new(2, 3, 4));
    }

    #[test]
    fn accepts_good_upload() {
        let img = image(5000);
        let file = upload(&img, V2, "esp32c3");
        let m = verify_manifest(&key().public_key(), &file, V1, "esp32c3").unwrap();
        assert_eq!(
            (m.version, m.image_size, m.board.as_str()),
            (V2, 5000, "esp32c3")
        );
        for chunk in [1, 7, 100, 128, 129, 4096, 100_000] {
            let (m2, written) = receive(&file, chunk).unwrap();
            assert_eq!(m2, m);
            assert_eq!(written, img, "chunk {chunk}");
        }
    }

    #[test]
    fn refuses_bad_signature() {
        let file = upload(&image(100), V2, "esp32c3");
        let other = FirmwareSigningKey::from_seed(&[8; 32]).public_key();
        assert_eq!(
            verify_manifest(&other, &file, V1, "esp32c3"),
            Err(OtaError::BadSignature)
        );
        // Any tampered manifest field or signature bit.
        for byte in (8..MANIFEST_LEN).step_by(3) {
            let mut f = file.clone();
            f[byte] ^= 0x01;
            assert_eq!(
                receive(&f, 64).err(),
                Some(OtaError::BadSignature),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn refuses_downgrade_and_equal_version() {
        let pk = key().public_key();
        let f = upload(&image(100), V1, "esp32c3");
        assert_eq!(
            verify_manifest(&pk, &f, V1, "esp32c3"),
            Err(OtaError::NotNewer {
                running: V1,
                offered: V1
            })
        );
        let f = upload(&image(100), FirmwareVersion::new(0, 9, 9), "esp32c3");
        assert!(matches!(
            verify_manifest(&pk, &f, V1, "esp32c3"),
            Err(OtaError::NotNewer { .. })
        ));
        assert!(matches!(receive(&f, 50), Err(OtaError::NotNewer { .. })));
        let f = upload(&image(100), FirmwareVersion::new(1, 0, 1), "esp32c3");
        assert!(verify_manifest(&pk, &f, V1, "esp32c3").is_ok());
    }

    #[test]
    fn refuses_wrong_board() {
        let f = upload(&image(100), V2, "esp32");
        assert_eq!(
            verify_manifest(&key().public_key(), &f, V1, "esp32c3"),
            Err(OtaError::WrongBoard)
        );
        assert_eq!(receive(&f, 10).err(), Some(OtaError::WrongBoard));
        assert!(sign_image(&key(), &[], V2, "ESP32").is_err());
        assert!(sign_image(&key(), &[], V2, "").is_err());
        assert!(sign_image(&key(), &[], V2, "a-very-long-board").is_err());
        let rx = OtaReceiver::new(key().public_key(), V1, "Bad Board", SLOT);
        assert_eq!(rx.finish(), Err(OtaError::WrongBoard));
    }

    #[test]
    fn refuses_truncated_upload() {
        let img = image(3000);
        let file = upload(&img, V2, "esp32c3");
        for cut in [
            0,
            1,
            64,
            MANIFEST_LEN - 1,
            MANIFEST_LEN,
            MANIFEST_LEN + 1,
            file.len() - 1,
        ] {
            assert_eq!(
                receive(&file[..cut], 97).err(),
                Some(OtaError::Truncated),
                "cut {cut}"
            );
        }
        assert_eq!(
            verify_manifest(&key().public_key(), &file[..100], V1, "esp32c3"),
            Err(OtaError::Truncated)
        );
    }

    #[test]
    fn refuses_altered_or_oversized_image() {
        let img = image(3000);
        let mut file = upload(&img, V2, "esp32c3");
        file[MANIFEST_LEN + 1234] ^= 0x80;
        assert_eq!(receive(&file, 500).err(), Some(OtaError::DigestMismatch));
        let mut file = upload(&img, V2, "esp32c3");
        file.push(0);
        assert_eq!(receive(&file, 500).err(), Some(OtaError::TooLarge));
        // Larger than the slot: refused as soon as the manifest is in.
        let file = upload(&image(2000), V2, "esp32c3");
        let mut rx = OtaReceiver::new(key().public_key(), V1, "esp32c3", 1999);
        assert_eq!(rx.push(&file[..MANIFEST_LEN]), Err(OtaError::TooLarge));
        assert_eq!(rx.push(&file[MANIFEST_LEN..]), Err(OtaError::TooLarge));
    }

    #[test]
    fn refuses_foreign_files_and_bad_fields() {
        let pk = key().public_key();
        let mut f = upload(&image(10), V2, "esp32c3");
        f[0] = b'X';
        assert_eq!(
            verify_manifest(&pk, &f, V1, "esp32c3"),
            Err(OtaError::BadMagic)
        );
        let mut f = upload(&image(10), V2, "esp32c3");
        f[4] = 2;
        assert_eq!(
            verify_manifest(&pk, &f, V1, "esp32c3"),
            Err(OtaError::UnsupportedFormat(2))
        );
        // Correctly signed but with a non-zero reserved byte or a bad board.
        let mut m = Manifest::decode_unverified(&upload(&image(10), V2, "esp32c3"))
            .unwrap()
            .0;
        let mut fields = m.encode_fields();
        fields[6] = 1;
        assert_eq!(decode_fields(&fields), Err(OtaError::BadManifest));
        m.board.bytes = *b"esp\0c3\0\0\0\0\0\0";
        let f = key().sign_manifest(&m);
        assert_eq!(
            verify_manifest(&pk, &f, V1, "esp"),
            Err(OtaError::BadManifest)
        );
    }

    #[test]
    fn keys_round_trip() {
        let k = key();
        let pk = k.public_key();
        assert_eq!(FirmwarePublicKey::from_hex(&pk.to_hex()), Ok(pk));
        assert_eq!(FirmwareSigningKey::from_seed(&k.to_seed()).public_key(), pk);
        assert_eq!(
            FirmwarePublicKey::from_hex("00"),
            Err(OtaError::BadPublicKey)
        );
        // The identity point is a weak key.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert_eq!(
            FirmwarePublicKey::from_bytes(&ident),
            Err(OtaError::BadPublicKey)
        );
    }

    #[test]
    fn version_text() {
        assert_eq!("1.2.3".parse(), Ok(FirmwareVersion::new(1, 2, 3)));
        assert_eq!("v0.10.0".parse(), Ok(FirmwareVersion::new(0, 10, 0)));
        for bad in ["1.2", "1.2.3.4", "1.2.x", "1..3", "65536.0.0", "+1.2.3", ""] {
            assert_eq!(
                bad.parse::<FirmwareVersion>(),
                Err(VersionParseError),
                "{bad}"
            );
        }
        assert!(FirmwareVersion::new(1, 10, 0) > FirmwareVersion::new(1, 9, 99));
        assert_eq!(alloc::format!("{}", FirmwareVersion::new(1, 2, 3)), "1.2.3");
    }

    proptest! {
        #[test]
        fn round_trip_any_image_and_chunking(
            img in proptest::collection::vec(any::<u8>(), 0..3000),
            chunk in 1usize..600,
            v in (1u16..5, any::<u16>(), any::<u16>()),
        ) {
            let v = FirmwareVersion::new(v.0, v.1, v.2);
            let file = upload(&img, v, "esp32c3");
            let (m, written) = receive(&file, chunk).unwrap();
            prop_assert_eq!(m.version, v);
            prop_assert_eq!(written, img);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = receive(&data, 33);
            let _ = Manifest::decode_unverified(&data);
        }
    }
}
