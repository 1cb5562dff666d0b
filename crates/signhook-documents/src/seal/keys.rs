//! The sealer: a private key and the certificate chain that names it.
//!
//! Read from a PEM file or a PKCS#12 file, or made self-signed; either way
//! the key is checked against the certificates before it can seal anything,
//! so that a file whose key belongs to another certificate is refused when
//! it is loaded, not discovered when a reader rejects every sealed PDF.
//!
//! The arithmetic is ring's (ECDSA P-256 and P-384, RSA PKCS#1 v1.5); the
//! ASN.1 structures are RustCrypto's.

use super::pfx;
use chrono::{DateTime, Duration, Utc};
use const_oid::db::{rfc4519, rfc5912};
use der::asn1::{BitString, GeneralizedTime, Null, ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode, Sequence, Tag, Tagged};
use ring::rand::SystemRandom;
use ring::signature::{self as ring_signature, EcdsaKeyPair, KeyPair, RsaKeyPair};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::Extension;
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

/// Why a key file cannot seal. The messages name what to do about it; the
/// caller adds which file (or flag) it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealKeyError {
    /// Neither PEM nor PKCS#12.
    #[error("it is neither a PEM file (-----BEGIN …) nor a PKCS#12 file (.p12, .pfx)")]
    UnknownFormat,
    /// A PEM file without a private key block.
    #[error("it holds no private key (a PEM block PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")]
    NoKey,
    /// More than one private key: which one seals would be a guess.
    #[error("it holds more than one private key; keep only the sealing key")]
    SeveralKeys,
    /// No certificate at all.
    #[error("it holds no certificate (a PEM block CERTIFICATE)")]
    NoCertificate,
    /// A password-protected PEM key.
    #[error(
        "its private key is encrypted: decrypt it (openssl pkey -in key.pem -out plain.pem), \
         or use a PKCS#12 file and its password"
    )]
    EncryptedPem,
    /// The PKCS#12 password does not open the file.
    #[error("the PKCS#12 password is wrong or missing (or the file is damaged)")]
    WrongPassword,
    /// A key type the seal does not sign with.
    #[error("its key is {0}; the seal signs with ECDSA P-256 or P-384, or RSA of 2048 bits or more")]
    UnsupportedKey(String),
    /// The private key belongs to none of the certificates.
    #[error("its private key does not belong to any of its certificates")]
    KeyDoesNotMatch,
    /// The bytes do not decode.
    #[error("it cannot be read: {0}")]
    Malformed(String),
}

impl From<der::Error> for SealKeyError {
    fn from(e: der::Error) -> Self {
        SealKeyError::Malformed(e.to_string())
    }
}

/// The platform's sealing identity: a private key and its certificate
/// chain, leaf first. Built by [`Sealer::load`] or
/// [`Sealer::self_signed`]; a `Sealer` that exists has a key that matches
/// its leaf certificate.
///
/// `Debug` shows the certificate's subject, never the key.
pub struct Sealer {
    key: SigningKey,
    /// The private key as PKCS#8 DER, to hand it on ([`Sealer::to_pem`]).
    pkcs8: Vec<u8>,
    /// Leaf first, then each issuer found among the given certificates.
    chain: Vec<Certificate>,
}

enum SigningKey {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// The digest the CMS signature uses, chosen by the key: SHA-384 for
/// P-384 (ring signs P-384 with it alone), SHA-256 otherwise.
#[derive(Clone, Copy)]
pub(super) enum Digest {
    Sha256,
    Sha384,
}

impl Digest {
    pub(super) fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Digest::Sha256 => &ring::digest::SHA256,
            Digest::Sha384 => &ring::digest::SHA384,
        }
    }

    pub(super) fn oid(self) -> ObjectIdentifier {
        match self {
            Digest::Sha256 => rfc5912::ID_SHA_256,
            Digest::Sha384 => rfc5912::ID_SHA_384,
        }
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("subject", &self.subject())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Sealer {
    /// Reads a key file: PEM (a private key — PKCS#8 `PRIVATE KEY`, SEC1
    /// `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY` — and the certificate
    /// chain as `CERTIFICATE` blocks, in any order; other blocks and text
    /// between blocks are ignored), or PKCS#12 (DER, as OpenSSL writes it,
    /// with AES/PBES2 or the legacy 3DES and RC2 ciphers) opened with
    /// `password` (none is the empty password).
    ///
    /// The leaf is the certificate the key belongs to; the chain follows
    /// issuers from it, and certificates outside that chain are left out.
    pub fn load(bytes: &[u8], password: Option<&str>) -> Result<Sealer, SealKeyError> {
        let text_start = bytes.iter().position(|b| !b.is_ascii_whitespace());
        if text_start.is_some_and(|at| bytes[at] == 0x30) {
            let contents = pfx::read(bytes, password.unwrap_or(""))?;
            let mut keys = contents.keys.into_iter();
            let key = keys.next().ok_or(SealKeyError::NoKey)?;
            if keys.next().is_some() {
                return Err(SealKeyError::SeveralKeys);
            }
            return Sealer::from_parts(PrivateKey::from_pkcs8(&key)?, &contents.certificates);
        }
        if !contains(bytes, b"-----BEGIN ") {
            return Err(SealKeyError::UnknownFormat);
        }
        let mut key = None;
        let mut certificates = Vec::new();
        for (label, der) in pem_blocks(bytes)? {
            let parsed = match label.as_str() {
                "CERTIFICATE" => {
                    certificates.push(der);
                    continue;
                }
                "PRIVATE KEY" => PrivateKey::from_pkcs8(&der)?,
                "EC PRIVATE KEY" => PrivateKey::from_sec1(&der, None)?,
                "RSA PRIVATE KEY" => PrivateKey::Rsa { pkcs1: der },
                "ENCRYPTED PRIVATE KEY" => return Err(SealKeyError::EncryptedPem),
                _ => continue,
            };
            if key.replace(parsed).is_some() {
                return Err(SealKeyError::SeveralKeys);
            }
        }
        Sealer::from_parts(key.ok_or(SealKeyError::NoKey)?, &certificates)
    }

    /// A new ECDSA P-256 key and a certificate for it signed by itself:
    /// subject `CN={common_name}, O={organization}`, valid from an hour
    /// before `now` for 30 years, for signatures only (not a CA).
    ///
    /// Readers show a seal made with it as intact but its signer as
    /// unknown: nobody vouches for a self-signed certificate.
    pub fn self_signed(common_name: &str, organization: &str, now: DateTime<Utc>) -> Result<Sealer, SealKeyError> {
        let rng = SystemRandom::new();
        let algorithm = &ring_signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let unexpected = |what: &str| SealKeyError::Malformed(format!("making the self-signed key failed: {what}"));
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, &rng).map_err(|_| unexpected("no key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), &rng).map_err(|e| unexpected(&e.to_string()))?;
        let public = pair.public_key().as_ref();

        let name = RdnSequence(vec![
            rdn(rfc4519::ORGANIZATION_NAME, organization)?,
            rdn(rfc4519::COMMON_NAME, common_name)?,
        ]);
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut serial).map_err(|_| unexpected("no randomness"))?;
        // Positive and of full length: the top bit clear, the next set.
        serial[0] = (serial[0] & 0x7f) | 0x40;
        let signature_algorithm = AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        };
        let extensions = vec![
            extension(
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
                true,
            )?,
            extension(&KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation), true)?,
            extension(
                // RFC 5280 4.2.1.2, method 1: the SHA-1 of the public key.
                &SubjectKeyIdentifier(OctetString::new(sha1_of(public))?),
                false,
            )?,
        ];
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(&serial)?,
            signature: signature_algorithm.clone(),
            issuer: name.clone(),
            validity: Validity {
                not_before: x509_time(now - Duration::hours(1))?,
                not_after: x509_time(now + Duration::days(30 * 365))?,
            },
            subject: name,
            subject_public_key_info: SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: rfc5912::ID_EC_PUBLIC_KEY,
                    parameters: Some(Any::encode_from(&rfc5912::SECP_256_R_1)?),
                },
                subject_public_key: BitString::from_bytes(public)?,
            },
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        let signature = pair
            .sign(&rng, &tbs.to_der()?)
            .map_err(|_| unexpected("signing the certificate"))?;
        let certificate = Certificate {
            tbs_certificate: tbs,
            signature_algorithm,
            signature: BitString::from_bytes(signature.as_ref())?,
        };
        Sealer::from_parts(PrivateKey::from_pkcs8(pkcs8.as_ref())?, &[certificate.to_der()?])
    }

    /// The key (PKCS#8) and the chain as one PEM text, in a form
    /// [`Sealer::load`] reads back. It holds the private key: keep it out
    /// of logs, and in files only this user reads.
    pub fn to_pem(&self) -> Result<String, SealKeyError> {
        let block = |label, der: &[u8]| der::pem::encode_string(label, der::pem::LineEnding::LF, der);
        let mut pem = block("PRIVATE KEY", &self.pkcs8).map_err(der::Error::from)?;
        for certificate in &self.chain {
            pem.push_str(&block("CERTIFICATE", &certificate.to_der()?).map_err(der::Error::from)?);
        }
        Ok(pem)
    }

    /// The leaf certificate's subject, as RFC 4514 writes it
    /// (`CN=…,O=…`).
    pub fn subject(&self) -> String {
        self.leaf().tbs_certificate.subject.to_string()
    }

    /// The leaf certificate's common name, or its whole subject when it
    /// has none: the signer's name a reader shows.
    pub fn signer_name(&self) -> String {
        let subject = &self.leaf().tbs_certificate.subject;
        subject
            .0
            .iter()
            .rev()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == rfc4519::COMMON_NAME)
            .and_then(|atv| directory_string(&atv.value))
            .unwrap_or_else(|| subject.to_string())
    }

    /// When the leaf certificate stops being valid.
    pub fn not_after(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.leaf().tbs_certificate.validity.not_after.to_system_time())
    }

    /// Whether the leaf certificate is its own issuer.
    pub fn is_self_signed(&self) -> bool {
        let tbs = &self.leaf().tbs_certificate;
        tbs.issuer == tbs.subject
    }

    /// How many certificates the chain has, the leaf included.
    pub fn chain_len(&self) -> usize {
        self.chain.len()
    }

    pub(super) fn leaf(&self) -> &Certificate {
        &self.chain[0]
    }

    pub(super) fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    pub(super) fn digest(&self) -> Digest {
        match self.key {
            SigningKey::P384(_) => Digest::Sha384,
            SigningKey::P256(_) | SigningKey::Rsa(_) => Digest::Sha256,
        }
    }

    /// The CMS `signatureAlgorithm` of the signatures [`Sealer::sign`]
    /// makes (RFC 5754 for ECDSA; RFC 4055 for RSA, with its NULL).
    pub(super) fn signature_algorithm(&self) -> Result<AlgorithmIdentifierOwned, der::Error> {
        Ok(match self.key {
            SigningKey::P256(_) => AlgorithmIdentifierOwned {
                oid: rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            SigningKey::P384(_) => AlgorithmIdentifierOwned {
                oid: rfc5912::ECDSA_WITH_SHA_384,
                parameters: None,
            },
            SigningKey::Rsa(_) => AlgorithmIdentifierOwned {
                oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(Any::encode_from(&Null)?),
            },
        })
    }

    /// The most bytes a signature takes (a DER ECDSA signature varies by a
    /// few bytes).
    pub(super) fn max_signature_len(&self) -> usize {
        match &self.key {
            SigningKey::P256(_) => 72,
            SigningKey::P384(_) => 104,
            SigningKey::Rsa(pair) => pair.public().modulus_len(),
        }
    }

    /// Signs `message` (hashing it with [`Sealer::digest`]'s algorithm).
    pub(super) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::P256(pair) | SigningKey::P384(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
            SigningKey::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&ring_signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)?;
                Ok(signature)
            }
        }
    }

    /// Pairs `key` with the certificate it belongs to and orders the chain.
    fn from_parts(key: PrivateKey, certificates: &[Vec<u8>]) -> Result<Sealer, SealKeyError> {
        if certificates.is_empty() {
            return Err(SealKeyError::NoCertificate);
        }
        let mut certificates = certificates
            .iter()
            .map(|der| Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SealKeyError::Malformed(format!("a certificate does not decode ({e})")))?;
        let pkcs8 = key.to_pkcs8()?;
        let public_key = |certificate: &Certificate| {
            let spki = &certificate.tbs_certificate.subject_public_key_info;
            (spki.algorithm.clone(), spki.subject_public_key.raw_bytes().to_vec())
        };
        let (leaf, key_pair) = match key {
            PrivateKey::Rsa { pkcs1 } => {
                let pair = RsaKeyPair::from_der(&pkcs1).map_err(|e| match e.to_string().as_str() {
                    "TooSmall" => SealKeyError::UnsupportedKey("RSA of fewer than 2048 bits".into()),
                    other => SealKeyError::Malformed(format!("the RSA key is refused ({other})")),
                })?;
                let leaf = certificates
                    .iter()
                    .map(public_key)
                    .position(|(algorithm, public)| {
                        algorithm.oid == rfc5912::RSA_ENCRYPTION && pair.public().as_ref() == public.as_slice()
                    })
                    .ok_or(SealKeyError::KeyDoesNotMatch)?;
                (leaf, SigningKey::Rsa(pair))
            }
            PrivateKey::Ec { curve, scalar, .. } => {
                let rng = SystemRandom::new();
                certificates
                    .iter()
                    .map(public_key)
                    .enumerate()
                    .find_map(|(i, (algorithm, public))| {
                        let same_curve = algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY
                            && parameters_oid(&algorithm) == Some(curve.oid());
                        // ring checks that the public key is the private key's.
                        let pair = same_curve.then(|| {
                            EcdsaKeyPair::from_private_key_and_public_key(curve.ring(), &scalar, &public, &rng)
                        });
                        pair.and_then(Result::ok).map(|pair| (i, curve.key(pair)))
                    })
                    .ok_or(SealKeyError::KeyDoesNotMatch)?
            }
        };
        let mut chain = vec![certificates.remove(leaf)];
        loop {
            let last = &chain[chain.len() - 1].tbs_certificate;
            if last.issuer == last.subject {
                break;
            }
            match certificates
                .iter()
                .position(|c| c.tbs_certificate.subject == last.issuer)
            {
                Some(issuer) => chain.push(certificates.remove(issuer)),
                None => break,
            }
        }
        Ok(Sealer {
            key: key_pair,
            pkcs8,
            chain,
        })
    }
}

/// A private key as read, before it meets its certificate.
enum PrivateKey {
    Ec {
        curve: Curve,
        /// The private scalar, big-endian, of the curve's full length.
        scalar: Vec<u8>,
        /// The SEC1 `ECPrivateKey` it came in.
        sec1: Vec<u8>,
    },
    Rsa {
        /// The PKCS#1 `RSAPrivateKey`.
        pkcs1: Vec<u8>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn from_oid(oid: ObjectIdentifier) -> Result<Curve, SealKeyError> {
        match oid {
            rfc5912::SECP_256_R_1 => Ok(Curve::P256),
            rfc5912::SECP_384_R_1 => Ok(Curve::P384),
            other => Err(SealKeyError::UnsupportedKey(format!(
                "an elliptic-curve key on curve {other}"
            ))),
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Curve::P256 => rfc5912::SECP_256_R_1,
            Curve::P384 => rfc5912::SECP_384_R_1,
        }
    }

    fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn ring(self) -> &'static ring_signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &ring_signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &ring_signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    fn key(self, pair: EcdsaKeyPair) -> SigningKey {
        match self {
            Curve::P256 => SigningKey::P256(pair),
            Curve::P384 => SigningKey::P384(pair),
        }
    }
}

/// PKCS#8 `PrivateKeyInfo` (RFC 5208), or `OneAsymmetricKey` (RFC 5958,
/// version 1, with its public key).
#[derive(Sequence)]
struct PrivateKeyInfo {
    version: u8,
    algorithm: AlgorithmIdentifierOwned,
    private_key: OctetString,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    attributes: Option<x509_cert::attr::Attributes>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    public_key: Option<BitString>,
}

/// SEC1 `ECPrivateKey` (RFC 5915).
#[derive(Sequence)]
struct EcPrivateKey {
    version: u8,
    private_key: OctetString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    parameters: Option<ObjectIdentifier>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    public_key: Option<BitString>,
}

impl PrivateKey {
    fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, SealKeyError> {
        let info = PrivateKeyInfo::from_der(der)
            .map_err(|e| SealKeyError::Malformed(format!("the PKCS#8 private key does not decode ({e})")))?;
        let inner = info.private_key.as_bytes();
        match info.algorithm.oid {
            rfc5912::RSA_ENCRYPTION => Ok(PrivateKey::Rsa { pkcs1: inner.to_vec() }),
            rfc5912::ID_EC_PUBLIC_KEY => {
                let curve = parameters_oid(&info.algorithm).ok_or_else(|| {
                    SealKeyError::UnsupportedKey("an elliptic-curve key without a named curve".into())
                })?;
                PrivateKey::from_sec1(inner, Some(Curve::from_oid(curve)?))
            }
            oid => Err(SealKeyError::UnsupportedKey(match oid.to_string().as_str() {
                "1.3.101.112" => "Ed25519".into(),
                "1.3.101.113" => "Ed448".into(),
                "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
                other => format!("of algorithm {other}"),
            })),
        }
    }

    /// A SEC1 key, whose curve is named inside it or (in PKCS#8) around it.
    fn from_sec1(der: &[u8], curve: Option<Curve>) -> Result<PrivateKey, SealKeyError> {
        let key = EcPrivateKey::from_der(der)
            .map_err(|e| SealKeyError::Malformed(format!("the EC private key does not decode ({e})")))?;
        let curve = match (curve, key.parameters) {
            (Some(curve), None) => curve,
            (outer, Some(inner)) => {
                let inner = Curve::from_oid(inner)?;
                if outer.is_some_and(|outer| outer != inner) {
                    return Err(SealKeyError::Malformed("the EC key names two curves".into()));
                }
                inner
            }
            (None, None) => {
                return Err(SealKeyError::UnsupportedKey(
                    "an elliptic-curve key without a named curve".into(),
                ))
            }
        };
        // Some writers drop the scalar's leading zero bytes.
        let bytes = key.private_key.as_bytes();
        let length = curve.scalar_len();
        if bytes.len() > length {
            return Err(SealKeyError::Malformed(
                "the EC private key is longer than its curve".into(),
            ));
        }
        let mut scalar = vec![0; length - bytes.len()];
        scalar.extend_from_slice(bytes);
        Ok(PrivateKey::Ec {
            curve,
            scalar,
            sec1: der.to_vec(),
        })
    }

    fn to_pkcs8(&self) -> Result<Vec<u8>, der::Error> {
        let (algorithm, inner) = match self {
            PrivateKey::Ec { curve, sec1, .. } => (
                AlgorithmIdentifierOwned {
                    oid: rfc5912::ID_EC_PUBLIC_KEY,
                    parameters: Some(Any::encode_from(&curve.oid())?),
                },
                sec1,
            ),
            PrivateKey::Rsa { pkcs1 } => (
                AlgorithmIdentifierOwned {
                    oid: rfc5912::RSA_ENCRYPTION,
                    parameters: Some(Any::encode_from(&Null)?),
                },
                pkcs1,
            ),
        };
        PrivateKeyInfo {
            version: 0,
            algorithm,
            private_key: OctetString::new(inner.as_slice())?,
            attributes: None,
            public_key: None,
        }
        .to_der()
    }
}

/// The PEM blocks of `bytes`, each as its label and decoded bytes; text
/// around them is skipped.
fn pem_blocks(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, SealKeyError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, BEGIN) {
        let block = &rest[start..];
        let label_end = find(&block[BEGIN.len()..], b"-----")
            .ok_or_else(|| SealKeyError::Malformed("a PEM BEGIN line does not end with -----".into()))?;
        let label = String::from_utf8_lossy(&block[BEGIN.len()..BEGIN.len() + label_end]).into_owned();
        let end_line = format!("-----END {label}-----");
        let end = find(block, end_line.as_bytes())
            .ok_or_else(|| SealKeyError::Malformed(format!("the PEM block {label} has no END line")))?
            + end_line.len();
        let block = &block[..end];
        // Legacy OpenSSL encryption puts headers in the block.
        if contains(block, b"Proc-Type:") {
            return Err(SealKeyError::EncryptedPem);
        }
        let (_, der) = der::pem::decode_vec(block)
            .map_err(|e| SealKeyError::Malformed(format!("the PEM block {label} does not decode ({e})")))?;
        blocks.push((label, der));
        rest = &rest[start + end..];
    }
    Ok(blocks)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// One attribute of a distinguished name, as a UTF8String.
fn rdn(oid: ObjectIdentifier, value: &str) -> Result<RelativeDistinguishedName, der::Error> {
    let value = Any::new(Tag::Utf8String, value.as_bytes())?;
    Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![
        AttributeTypeAndValue { oid, value },
    ])?))
}

/// The text of a DirectoryString (UTF8String, PrintableString, …).
fn directory_string(value: &Any) -> Option<String> {
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            Some(String::from_utf8_lossy(value.value()).into_owned())
        }
        _ => None,
    }
}

fn extension<T: Encode + der::oid::AssociatedOid>(value: &T, critical: bool) -> Result<Extension, der::Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
fn x509_time(at: DateTime<Utc>) -> Result<Time, der::Error> {
    let since_epoch = std::time::Duration::from_secs(u64::try_from(at.timestamp()).unwrap_or(0));
    if at.timestamp() < 2_524_608_000 {
        Ok(Time::UtcTime(UtcTime::from_unix_duration(since_epoch)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_unix_duration(since_epoch)?))
    }
}

fn sha1_of(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).to_vec()
}

/// The OID an algorithm's parameters hold (an elliptic curve's name).
fn parameters_oid(algorithm: &AlgorithmIdentifierOwned) -> Option<ObjectIdentifier> {
    algorithm.parameters.as_ref()?.decode_as().ok()
}
