//! Checkpoints as C2SP signed notes (<https://c2sp.org/signed-note>,
//! <https://c2sp.org/tlog-checkpoint>) under an Ed25519 key.
//!
//! Parsing is strict on purpose: a checkpoint is evidence (two signed notes
//! that disagree prove tampering), so there must be exactly one text for a
//! given size and root, and anything a C2SP verifier would refuse is
//! refused here too.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature type byte of Ed25519 in key hashes and verifier keys.
const ED25519: u8 = 0x01;
/// What starts every signature line: U+2014 EM DASH, then a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Bytes of a signature line's payload: key hash then Ed25519 signature.
const SIG_LEN: usize = 4 + 64;
/// As in Go's `golang.org/x/mod/sumdb/note`: more signature lines than
/// this is not a note anyone wrote, and would make verifying it expensive.
const MAX_SIGNATURES: usize = 100;

/// Why a key, a note or a checkpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    /// A key name is empty or has whitespace, a control character or `+`.
    #[error("key name must be non-empty, without whitespace, control characters or '+'")]
    InvalidKeyName,
    /// A verifier key is not `<name>+<8 hex digits>+<base64>`.
    #[error("malformed verifier key: {0}")]
    MalformedVkey(&'static str),
    /// A verifier key names a signature type other than Ed25519.
    #[error("verifier key type {0:#04x} is not ed25519 (0x01)")]
    UnsupportedKeyType(u8),
    /// The public key is not a usable Ed25519 point.
    #[error("verifier key is not a valid ed25519 public key")]
    InvalidPublicKey,
    /// A verifier key's hash does not match its name and public key.
    #[error("verifier key hash does not match its name and public key")]
    KeyHashMismatch,
    /// The note is not text, blank line, signature lines.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// The note text is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A signature line by the trusted key does not verify.
    #[error("signature by key {name} does not verify")]
    BadSignature {
        /// The key name.
        name: String,
    },
    /// No signature line is by the trusted key.
    #[error("note has no signature by key {name}")]
    NoSignature {
        /// The key name.
        name: String,
    },
    /// The checkpoint's origin is not the name of the key that signed it.
    #[error("checkpoint origin {origin:?} is not the key name {name:?}")]
    OriginMismatch {
        /// The checkpoint's origin line.
        origin: String,
        /// The key name.
        name: String,
    },
}

/// A signed tree head: the log `origin` had `size` entries with this root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, equal to its key name.
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// RFC 6962 root of the tree of `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, decimal size and base64 root, each on its own
    /// line. No extension lines are written.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a note text written by [`Checkpoint::body`] (or by another
    /// C2SP log: extension lines after the root are allowed and ignored).
    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        use NoteError::MalformedCheckpoint as Bad;
        check_text(text).map_err(Bad)?;
        let Some(text) = text.strip_suffix('\n') else {
            return Err(Bad("text must end with a newline"));
        };
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or_default();
        let (Some(size), Some(root)) = (lines.next(), lines.next()) else {
            return Err(Bad("text must have origin, tree size and root hash lines"));
        };
        if lines.any(str::is_empty) {
            return Err(Bad("extension lines must not be empty"));
        }
        if origin.is_empty() {
            return Err(Bad("origin must not be empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
        })
    }
}

/// A tree size: decimal digits, no sign, no leading zeros (except "0").
fn parse_size(line: &str) -> Result<u64, NoteError> {
    let bad = NoteError::MalformedCheckpoint("tree size must be decimal without leading zeros");
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(bad);
    }
    line.parse().map_err(|_| bad)
}

/// A root hash: exactly 32 bytes in padded standard base64. The engine
/// refuses missing padding and non-zero trailing bits, so there is one
/// spelling of each root.
fn parse_root(line: &str) -> Result<Hash, NoteError> {
    STANDARD
        .decode(line)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes).ok())
        .ok_or(NoteError::MalformedCheckpoint(
            "root hash must be 32 bytes of padded standard base64",
        ))
}

/// The C2SP rule for note text: no ASCII control character but newline.
fn check_text(text: &str) -> Result<(), &'static str> {
    if text.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err("text must not contain control characters other than newline");
    }
    Ok(())
}

/// The C2SP rule for key names: non-empty, no Unicode whitespace, no `+`
/// (the verifier key's separator). Control characters are refused too,
/// since no note may contain them.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[..4]`: identifies the key
/// in signature lines, so a verifier can skip other keys' signatures
/// without trying them.
fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(key.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs notes under a key name.
pub struct NoteSigner {
    /// The key name, which is also the checkpoints' origin.
    name: String,
    /// The Ed25519 key; never printed.
    key: SigningKey,
    /// Precomputed, as every signature line carries it.
    key_hash: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    /// The key name and hash only: the signing key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_hash", &hex::encode(self.key_hash))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer for key `name` (non-empty, no whitespace, no `+`).
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        let key_hash = key_hash(name, &key.verifying_key());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            key_hash,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier of this signer's notes, to publish as a vkey.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            key_hash: self.key_hash,
        }
    }

    /// The whole signed note text: the checkpoint's body, a blank line and
    /// one signature line.
    ///
    /// Verifiers require the origin to equal the key name, so a checkpoint
    /// whose origin differs from [`NoteSigner::name`] yields a note that
    /// [`NoteVerifier::open`] refuses.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let text = checkpoint.body();
        let signature = self.key.sign(text.as_bytes());
        let mut payload = Vec::with_capacity(SIG_LEN);
        payload.extend_from_slice(&self.key_hash);
        payload.extend_from_slice(&signature.to_bytes());
        format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(payload)
        )
    }
}

/// Checks notes signed under one key name and Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    /// The key name, which must also be the checkpoints' origin.
    name: String,
    /// The Ed25519 public key.
    key: VerifyingKey,
    /// Precomputed, to pick this key's signature lines.
    key_hash: [u8; 4],
}

impl NoteVerifier {
    /// A verifier for key `name` (non-empty, no whitespace, no `+`). Weak
    /// (small-order) keys are refused: no signature could verify under them.
    pub fn new(name: &str, key: VerifyingKey) -> Result<NoteVerifier, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        if key.is_weak() {
            return Err(NoteError::InvalidPublicKey);
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_hash: key_hash(name, &key),
            key,
        })
    }

    /// Parses a verifier key, `<name>+<key hash, 8 lowercase hex
    /// digits>+<base64(0x01 || public key)>`, and checks its key hash.
    pub fn from_vkey(vkey: &str) -> Result<NoteVerifier, NoteError> {
        use NoteError::MalformedVkey as Bad;
        // The name and the hash have no '+'; the base64 key may.
        let Some((name, rest)) = vkey.split_once('+') else {
            return Err(Bad("expected <name>+<key hash>+<key>"));
        };
        let Some((hash_hex, key_b64)) = rest.split_once('+') else {
            return Err(Bad("expected <name>+<key hash>+<key>"));
        };
        if !valid_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hash_hex.len() != 8 || !hash_hex.bytes().all(lower_hex) {
            return Err(Bad("key hash must be 8 lowercase hex digits"));
        }
        let key = STANDARD
            .decode(key_b64)
            .map_err(|_| Bad("key must be padded standard base64"))?;
        let Some((&kind, public)) = key.split_first() else {
            return Err(Bad("key is empty"));
        };
        if kind != ED25519 {
            return Err(NoteError::UnsupportedKeyType(kind));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| Bad("ed25519 public key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::InvalidPublicKey)?;
        let verifier = NoteVerifier::new(name, key)?;
        if hex::encode(verifier.key_hash) != hash_hex {
            return Err(NoteError::KeyHashMismatch);
        }
        Ok(verifier)
    }

    /// The verifier key text that [`NoteVerifier::from_vkey`] reads.
    pub fn to_vkey(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ED25519);
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_hash),
            STANDARD.encode(key)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `SHA-256(name || 0x0A || 0x01 || public key)[..4]`.
    pub fn key_hash(&self) -> [u8; 4] {
        self.key_hash
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The same key under another name: the admin audit trail's
    /// checkpoints are signed by the decision log's key under
    /// `<origin>/admin-audit`, so a reader who trusts one derives the other.
    pub fn renamed(&self, name: &str) -> Result<NoteVerifier, NoteError> {
        NoteVerifier::new(name, self.key)
    }

    /// Verifies the note's signature by this key (ignores signature lines of other names; errors if none valid) and parses the checkpoint body; origin must equal the key name.
    ///
    /// Lines by this name under another key hash (another key of the same
    /// name, say after a rotation) are ignored too. A line by this very key
    /// that does not verify is an error even if another one does, as in
    /// Go's `sumdb/note`: a forged signature is worth reporting.
    pub fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        use NoteError::MalformedNote as Bad;
        check_text(note).map_err(Bad)?;
        // The text has no blank line (a checkpoint's lines are non-empty),
        // so the first blank line is the one before the signatures.
        let Some(split) = note.find("\n\n") else {
            return Err(Bad("no blank line between text and signatures"));
        };
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return Err(Bad("signatures must be present and end with a newline"));
        };
        let mut verified = false;
        for (count, line) in signatures.split('\n').enumerate() {
            if count == MAX_SIGNATURES {
                return Err(Bad("too many signature lines"));
            }
            let Some(line) = line.strip_prefix(SIG_PREFIX) else {
                return Err(Bad(
                    "signature lines must start with an em dash and a space",
                ));
            };
            let Some((name, b64)) = line.split_once(' ') else {
                return Err(Bad("signature line must be a key name, a space and base64"));
            };
            if !valid_name(name) {
                return Err(Bad("signature line has an invalid key name"));
            }
            let payload = STANDARD
                .decode(b64)
                .ok()
                .filter(|p| p.len() > 4)
                .ok_or(Bad(
                    "signature must be base64 of a key hash and a signature",
                ))?;
            if name != self.name || payload[..4] != self.key_hash {
                continue;
            }
            let bad = || NoteError::BadSignature {
                name: self.name.clone(),
            };
            let signature = Signature::from_slice(&payload[4..]).map_err(|_| bad())?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| bad())?;
            verified = true;
        }
        if !verified {
            return Err(NoteError::NoSignature {
                name: self.name.clone(),
            });
        }
        let checkpoint = Checkpoint::parse_body(text)?;
        if checkpoint.origin != self.name {
            return Err(NoteError::OriginMismatch {
                origin: checkpoint.origin,
                name: self.name.clone(),
            });
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "ekyc.local/decision-log";

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new(NAME, SigningKey::from_bytes(&[seed; 32])).expect("valid name")
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: NAME.into(),
            size: 7,
            root: crate::merkle::leaf_hash(b"root"),
        }
    }

    /// Splits a signed note into its text and its single signature line.
    fn parts(note: &str) -> (&str, &str) {
        let split = note.find("\n\n").expect("blank line");
        (&note[..=split], &note[split + 2..])
    }

    #[test]
    fn sign_then_open_round_trips() {
        let s = signer(1);
        let note = s.sign(&checkpoint());
        assert_eq!(s.verifier().open(&note), Ok(checkpoint()));
        let (text, sig) = parts(&note);
        assert_eq!(text, checkpoint().body());
        assert!(sig.starts_with("\u{2014} ekyc.local/decision-log "));
        assert!(sig.ends_with('\n') && sig.matches('\n').count() == 1);
    }

    #[test]
    fn body_round_trips_and_ignores_extension_lines() {
        let c = checkpoint();
        assert_eq!(Checkpoint::parse_body(&c.body()), Ok(c.clone()));
        let with_ext = format!("{}some extension\nanother\n", c.body());
        assert_eq!(Checkpoint::parse_body(&with_ext), Ok(c.clone()));
        let zero = Checkpoint { size: 0, ..c };
        assert_eq!(Checkpoint::parse_body(&zero.body()), Ok(zero));
    }

    #[test]
    fn body_parsing_is_strict() {
        let root = STANDARD.encode([7u8; 32]);
        let unpadded = root.trim_end_matches('=');
        let short = STANDARD.encode([7u8; 31]);
        // The last base64 digit of 32 bytes carries 2 unused bits: setting
        // one gives a second spelling of the same bytes, which is refused.
        let mut trailing = root.clone().into_bytes();
        trailing[42] = b'9';
        let trailing = String::from_utf8(trailing).expect("ascii");
        assert!(STANDARD.decode(&trailing).is_err());
        for bad in [
            format!("o\n7\n{root}"),
            format!("o\n07\n{root}\n"),
            format!("o\n+7\n{root}\n"),
            format!("o\n7 \n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n7\n{unpadded}\n"),
            format!("o\n7\n{short}\n"),
            format!("o\n7\n{trailing}\n"),
            format!("o\n7\n {root}\n"),
            format!("o\n7\n{root}\n\n"),
            format!("o\n7\n{root}\next\n\n"),
            format!("\n7\n{root}\n"),
            format!("o\r\n7\n{root}\n"),
            "o\n7\n".to_owned(),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n18446744073709551615\n{root}\n")).map(|c| c.size),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn tampered_notes_are_refused() {
        let s = signer(1);
        let v = s.verifier();
        let note = s.sign(&checkpoint());
        let root_b64 = STANDARD.encode(checkpoint().root);
        let other_root = STANDARD.encode([0u8; 32]);
        let tampered = [
            note.replacen("\n7\n", "\n8\n", 1),
            note.replacen(&root_b64, &other_root, 1),
            note.replacen("ekyc.local/decision-log\n", "ekyc.local/decision-logx\n", 1),
        ];
        for t in &tampered {
            assert_eq!(
                v.open(t),
                Err(NoteError::BadSignature { name: NAME.into() }),
                "{t}"
            );
        }
        // Every byte of the signature payload (after the 4-byte key hash).
        let (text, sig) = parts(&note);
        let b64 = sig.trim_end().rsplit(' ').next().expect("payload");
        let payload = STANDARD.decode(b64).expect("base64");
        for i in 4..payload.len() {
            let mut p = payload.clone();
            p[i] ^= 0x01;
            let forged = format!("{text}\n\u{2014} {NAME} {}\n", STANDARD.encode(&p));
            assert_eq!(
                v.open(&forged),
                Err(NoteError::BadSignature { name: NAME.into() }),
                "byte {i}"
            );
        }
        // A changed key hash makes the line someone else's: unsigned.
        let mut p = payload.clone();
        p[0] ^= 0x01;
        let other = format!("{text}\n\u{2014} {NAME} {}\n", STANDARD.encode(&p));
        assert_eq!(
            v.open(&other),
            Err(NoteError::NoSignature { name: NAME.into() })
        );
        // Signed by another key of the same name: not ours.
        assert_eq!(
            v.open(&signer(2).sign(&checkpoint())),
            Err(NoteError::NoSignature { name: NAME.into() })
        );
    }

    #[test]
    fn origin_must_be_the_key_name() {
        let s = signer(1);
        let c = Checkpoint {
            origin: "example.com/other-log".into(),
            ..checkpoint()
        };
        assert_eq!(
            s.verifier().open(&s.sign(&c)),
            Err(NoteError::OriginMismatch {
                origin: "example.com/other-log".into(),
                name: NAME.into()
            })
        );
    }

    #[test]
    fn other_names_signature_lines_are_ignored() {
        let s = signer(1);
        let witness = NoteSigner::new("witness.example/w1", SigningKey::from_bytes(&[9; 32]))
            .expect("valid name");
        let note = s.sign(&checkpoint());
        let witness_note = witness.sign(&checkpoint());
        let (_, witness_line) = parts(&witness_note);
        let (text, own_line) = parts(&note);
        let garbage = "\u{2014} other.example/k AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
        for lines in [
            format!("{witness_line}{own_line}"),
            format!("{own_line}{witness_line}"),
            format!("{garbage}{own_line}"),
        ] {
            let cosigned = format!("{text}\n{lines}");
            assert_eq!(s.verifier().open(&cosigned), Ok(checkpoint()));
        }
        // The witness's line alone does not make the note ours.
        assert_eq!(
            s.verifier().open(&format!("{text}\n{witness_line}")),
            Err(NoteError::NoSignature { name: NAME.into() })
        );
        // Nor does the witness trust our line.
        assert_eq!(
            witness.verifier().open(&note),
            Err(NoteError::NoSignature {
                name: "witness.example/w1".into()
            })
        );
    }

    #[test]
    fn note_structure_is_strict() {
        let s = signer(1);
        let v = s.verifier();
        let note = s.sign(&checkpoint());
        let (text, line) = parts(&note);
        let many: String = std::iter::repeat_n(line, MAX_SIGNATURES + 1).collect();
        for bad in [
            note.trim_end().to_owned(),
            format!("{text}{line}"),
            format!("{text}\n\n{line}"),
            format!("{text}\n"),
            format!("{text}\n{line}\n"),
            format!("{text}\n{}", line.replacen('\u{2014}', "-", 1)),
            format!("{text}\n{}", line.replacen("\u{2014} ", "\u{2014}", 1)),
            format!("{text}\n{}", line.replacen(' ', "  ", 1)),
            format!("{text}\n{}", line.replacen("=\n", "\n", 1)),
            format!("{text}\n\u{2014} {NAME} AAAA\n{line}"),
            format!("{text}\n\u{2014} {NAME}\n{line}"),
            format!("{text}\n{}", line.replace('\n', "\r\n")),
            format!("{text}\n{many}"),
        ] {
            assert!(
                matches!(v.open(&bad), Err(NoteError::MalformedNote(_))),
                "{bad:?}: {:?}",
                v.open(&bad)
            );
        }
        // Up to the limit is fine.
        let enough: String = std::iter::repeat_n(line, MAX_SIGNATURES).collect();
        assert_eq!(v.open(&format!("{text}\n{enough}")), Ok(checkpoint()));
    }

    #[test]
    fn vkey_round_trips_and_is_checked() {
        let v = signer(1).verifier();
        let vkey = v.to_vkey();
        assert_eq!(NoteVerifier::from_vkey(&vkey), Ok(v.clone()));
        let (name, rest) = vkey.split_once('+').expect("name");
        let (hash, key) = rest.split_once('+').expect("hash");
        assert_eq!(name, NAME);
        assert_eq!(hash, hex::encode(v.key_hash()));
        assert_eq!(
            STANDARD.decode(key).expect("base64")[0],
            0x01,
            "ed25519 type byte"
        );

        let other_hash = format!("{name}+00000000+{key}");
        assert_eq!(
            NoteVerifier::from_vkey(&other_hash),
            Err(NoteError::KeyHashMismatch)
        );
        let other_name = format!("{name}x+{hash}+{key}");
        assert_eq!(
            NoteVerifier::from_vkey(&other_name),
            Err(NoteError::KeyHashMismatch)
        );
        let original = STANDARD.decode(key).expect("base64");
        let mut raw = original.clone();
        raw[0] = 0x02;
        assert_eq!(
            NoteVerifier::from_vkey(&format!("{name}+{hash}+{}", STANDARD.encode(&raw))),
            Err(NoteError::UnsupportedKeyType(0x02))
        );
        for bad in [
            format!("{name}+{}+{key}", &hash[..7]),
            format!("{name}+{hash}0+{key}"),
            format!("{name}+{}g+{key}", &hash[..7]),
            format!("{name}+{}A+{key}", &hash[..7]),
            format!("{name}+{hash}"),
            format!("{name}{hash}"),
            format!("{name}+{hash}+{}", &key[..key.len() - 1]),
            format!("{name}+{hash}+{}", STANDARD.encode(&original[..32])),
            format!("{name}+{hash}+"),
        ] {
            assert!(
                matches!(
                    NoteVerifier::from_vkey(&bad),
                    Err(NoteError::MalformedVkey(_))
                ),
                "{bad}: {:?}",
                NoteVerifier::from_vkey(&bad)
            );
        }
        assert_eq!(
            NoteVerifier::from_vkey(&format!("a b+{hash}+{key}")),
            Err(NoteError::InvalidKeyName)
        );
    }

    #[test]
    fn key_hash_is_as_the_spec_says() {
        let v = signer(1).verifier();
        let public = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes();
        let mut input = NAME.as_bytes().to_vec();
        input.push(0x0a);
        input.push(0x01);
        input.extend_from_slice(&public);
        let digest = Sha256::digest(&input);
        assert_eq!(v.key_hash(), digest[..4]);
        assert_eq!(v.name(), NAME);
    }

    #[test]
    fn key_names_are_checked() {
        let key = SigningKey::from_bytes(&[1; 32]);
        for bad in ["", "a b", "a+b", "a\tb", "a\u{a0}b", "a\u{1}b", "a\nb"] {
            assert_eq!(
                NoteSigner::new(bad, key.clone()).map(|s| s.name().to_owned()),
                Err(NoteError::InvalidKeyName),
                "{bad:?}"
            );
            assert_eq!(
                NoteVerifier::new(bad, key.verifying_key()),
                Err(NoteError::InvalidKeyName)
            );
        }
        assert!(NoteSigner::new("example.com/log-1", key).is_ok());
    }

    #[test]
    fn signer_debug_does_not_print_the_key() {
        let s = signer(1);
        let debug = format!("{s:?}");
        assert!(debug.contains(NAME));
        assert!(!debug.contains(&hex::encode([1u8; 32])));
        assert!(!debug.contains("SigningKey"));
    }
}
