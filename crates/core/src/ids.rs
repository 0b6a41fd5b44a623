//! Identifiers: users, images, and the blob keys that name an image's bytes.

use std::fmt;
use std::str::FromStr;

use crate::error::InvalidInput;
use crate::time::Timestamp;

/// A user's id as clients send it: 1 to 128 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct UserId(String);

impl UserId {
    /// The longest user id accepted.
    pub const MAX_LEN: usize = 128;

    /// Validates `s` as a user id.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let valid_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if s.is_empty() || s.len() > Self::MAX_LEN || !valid_chars {
            return Err(InvalidInput::new(
                "invalid_user_id",
                format!("user id must be 1 to {} characters of [A-Za-z0-9._-]", Self::MAX_LEN),
            ));
        }
        Ok(UserId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one stored image: a UUIDv7 (time-ordered, random tail), never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ImageId(uuid::Uuid);

impl ImageId {
    /// Wraps a UUID; `None` unless it is a version 7 UUID.
    pub fn from_uuid(uuid: uuid::Uuid) -> Option<Self> {
        (uuid.get_version_num() == 7).then_some(ImageId(uuid))
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// The two-hex-digit shard prefix of this id's keys, taken from its random tail so
    /// keys spread evenly over 256 shards whatever their age.
    pub fn shard(&self) -> String {
        format!("{:02x}", self.0.as_bytes()[15])
    }

    /// When the issuing server minted this id, by its clock: the UUIDv7's first 48
    /// bits, in milliseconds since the Unix epoch.
    pub fn minted_at(&self) -> Timestamp {
        let b = self.0.as_bytes();
        let millis = b[..6].iter().fold(0i64, |acc, byte| (acc << 8) | i64::from(*byte));
        Timestamp::from_millis(millis)
    }
}

/// The spelling, in key order, below every image id minted at or after `t` and above
/// every id minted before it: the UUID whose time field is `t` and all other bits zero.
/// Keys of a shard sort by id and ids by mint time, so a listing of a shard that starts
/// after `{shard}/{bound}` sees every image minted at or after `t`. Times before the
/// epoch clamp to it, times past the 48-bit field to its end.
pub fn mint_time_bound(t: Timestamp) -> String {
    let millis = u64::try_from(t.as_millis()).unwrap_or(0).min((1u64 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

impl FromStr for ImageId {
    type Err = InvalidInput;

    /// Accepts only the canonical lowercase hyphenated form of a version 7 UUID, so
    /// every id has exactly one spelling (and one blob key).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidInput::new("invalid_image_id", "image id must be a lowercase hyphenated UUIDv7");
        let uuid = uuid::Uuid::try_parse(s).map_err(|_| invalid())?;
        let id = ImageId::from_uuid(uuid).ok_or_else(invalid)?;
        if id.to_string() != s {
            return Err(invalid());
        }
        Ok(id)
    }
}

impl fmt::Debug for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// One rendition of an image. Every variant of an image is written before the record
/// that names the image, and the cleaner deletes all of them as one unit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Variant {
    /// The bytes the client uploaded.
    Original,
}

impl Variant {
    /// Every variant this build knows. The cleaner deletes exactly these keys of an
    /// unreferenced image and never a key it cannot name.
    pub const ALL: [Variant; 1] = [Variant::Original];

    /// The variant's name in blob keys.
    pub fn as_str(&self) -> &'static str {
        match self {
            Variant::Original => "original",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Variant::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The key of one blob: `{shard}/{image_id}/{variant}`.
///
/// Only keys of exactly this shape can be built or parsed, so a store handed a
/// `BlobKey` to delete can never be made to touch a key outside the layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BlobKey {
    /// The image the blob belongs to.
    pub image_id: ImageId,
    /// Which rendition of the image it holds.
    pub variant: Variant,
}

impl BlobKey {
    /// The key of `variant` of `image_id`.
    pub fn new(image_id: ImageId, variant: Variant) -> Self {
        BlobKey { image_id, variant }
    }

    /// The key of the uploaded bytes of `image_id`.
    pub fn original(image_id: ImageId) -> Self {
        BlobKey::new(image_id, Variant::Original)
    }

    /// Parses a key listed by a blob store; `None` for anything not in the layout
    /// (wrong shard, non-canonical id, unknown variant, extra segments).
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.split('/');
        let (shard, id, variant) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let image_id: ImageId = id.parse().ok()?;
        if image_id.shard() != shard {
            return None;
        }
        Some(BlobKey { image_id, variant: Variant::parse(variant)? })
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.image_id.shard(), self.image_id, self.variant.as_str())
    }
}

/// The source of fresh image ids. Nothing in the core makes ids except through this
/// seam.
///
/// Promises: never returns the same id twice, across processes too.
pub trait IdSource: Send + Sync + 'static {
    /// A fresh, never-used image id.
    fn next_image_id(&self) -> ImageId;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_id() -> ImageId {
        "01900000-0000-7000-8000-0000000000ab".parse().unwrap()
    }

    #[test]
    fn the_mint_time_bound_sorts_between_ids_minted_before_and_at_its_time() {
        let t = Timestamp::from_millis(1_718_000_000_123);
        let at = ImageId::from_uuid(uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_718_000_000, 123_000_000))).unwrap();
        assert_eq!(at.minted_at(), t);
        let before = ImageId::from_uuid(uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_718_000_000, 122_999_999))).unwrap();
        assert_eq!(before.minted_at(), Timestamp::from_millis(1_718_000_000_122));
        let bound = mint_time_bound(t);
        assert!(before.to_string() < bound, "{before} sorts after {bound}");
        assert!(at.to_string() > bound, "{at} sorts before {bound}");
        assert_eq!(mint_time_bound(Timestamp::from_millis(-5)), "00000000-0000-0000-0000-000000000000");
        assert_eq!(mint_time_bound(Timestamp::from_millis(i64::MAX)), "ffffffff-ffff-0000-0000-000000000000");
    }

    #[test]
    fn user_ids_follow_the_documented_alphabet_and_length() {
        assert!(UserId::parse("alice.B_9-x").is_ok());
        assert!(UserId::parse(&"a".repeat(128)).is_ok());
        for bad in ["", "a/b", "a b", "ü", "a\u{0}", &"a".repeat(129)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn image_ids_must_be_canonical_uuid_v7() {
        assert!("01900000-0000-7000-8000-0000000000ab".parse::<ImageId>().is_ok());
        assert!("01900000-0000-7000-8000-0000000000AB".parse::<ImageId>().is_err(), "uppercase");
        assert!("0190000000007000800000000000000ab".parse::<ImageId>().is_err(), "simple form");
        assert!("01900000-0000-4000-8000-0000000000ab".parse::<ImageId>().is_err(), "v4");
    }

    #[test]
    fn keys_round_trip_and_carry_the_shard_from_the_random_tail() {
        let key = BlobKey::original(sample_id());
        assert_eq!(key.to_string(), "ab/01900000-0000-7000-8000-0000000000ab/original");
        assert_eq!(BlobKey::parse(&key.to_string()), Some(key));
    }

    #[test]
    fn keys_outside_the_layout_do_not_parse() {
        for bad in [
            "ac/01900000-0000-7000-8000-0000000000ab/original",
            "ab/01900000-0000-7000-8000-0000000000ab/thumbnail",
            "ab/01900000-0000-7000-8000-0000000000ab/original/x",
            "ab/01900000-0000-7000-8000-0000000000ab",
            "ab/01900000-0000-7000-8000-0000000000ab/original#1",
            "_profilestore/pairing.json",
            "",
        ] {
            assert_eq!(BlobKey::parse(bad), None, "{bad:?} parsed");
        }
    }
}
