//! Reading PKCS#12 files (RFC 7292): the private keys and certificates in
//! a password-protected file, as OpenSSL, Windows and Java write them.
//!
//! Only what a sealing key file needs: password integrity (the MAC) and
//! password privacy, with PBES2 (AES, OpenSSL 3's default) or the legacy
//! PKCS#12 ciphers (3DES and RC2, OpenSSL 1's default). Public-key
//! protection modes are refused. The file must be DER, which is what
//! OpenSSL writes; BER files (indefinite lengths) are refused with a hint.

use super::SealKeyError;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipher, BlockDecryptMut, InnerIvInit, KeyInit};
use cms::content_info::ContentInfo;
use cms::encrypted_data::EncryptedData;
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::OctetString;
use der::{AnyRef, Decode, Encode};
use pkcs12::cert_type::CertBag;
use pkcs12::kdf::{derive_key, Pkcs12KeyType};
use pkcs12::mac_data::MacData;
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
use pkcs12::pfx::Pfx;
use pkcs12::safe_bag::SafeBag;
use spki::AlgorithmIdentifierOwned;

/// What a PKCS#12 file holds, decrypted.
#[derive(Default)]
pub(super) struct Contents {
    /// Private keys, PKCS#8 DER.
    pub keys: Vec<Vec<u8>>,
    /// X.509 certificates, DER.
    pub certificates: Vec<Vec<u8>>,
}

/// Opens `der` with `password`.
pub(super) fn read(der: &[u8], password: &str) -> Result<Contents, SealKeyError> {
    let pfx = Pfx::from_der(der).map_err(|e| {
        SealKeyError::Malformed(format!(
            "the PKCS#12 structure does not decode ({e}); a file in BER, as some Java and Windows tools \
             write, can be rewritten in DER with `openssl pkcs12`"
        ))
    })?;
    if pfx.auth_safe.content_type != rfc5911::ID_DATA {
        return Err(SealKeyError::Malformed(
            "its contents are protected with a public key, not a password; only password protection is supported"
                .into(),
        ));
    }
    let authenticated = pfx.auth_safe.content.decode_as::<OctetString>()?;
    let secret = match &pfx.mac_data {
        Some(mac) => {
            // RFC 7292 B.1 makes the empty password two zero bytes; some
            // writers use no bytes at all. OpenSSL accepts both, and so do we.
            let bmp = bmp_password(password);
            let empty: &[u8] = &[];
            let candidates = if password.is_empty() {
                vec![bmp.as_slice(), empty]
            } else {
                vec![bmp.as_slice()]
            };
            let mut matched = None;
            for candidate in candidates {
                if mac_matches(mac, candidate, authenticated.as_bytes())? {
                    matched = Some(candidate.to_vec());
                    break;
                }
            }
            matched.ok_or(SealKeyError::WrongPassword)?
        }
        None => bmp_password(password),
    };

    let mut contents = Contents::default();
    for part in Vec::<ContentInfo>::from_der(authenticated.as_bytes())? {
        let bags = match part.content_type {
            rfc5911::ID_DATA => part.content.decode_as::<OctetString>()?.into_bytes(),
            rfc5911::ID_ENCRYPTED_DATA => {
                let info = part.content.decode_as::<EncryptedData>()?.enc_content_info;
                let ciphertext = info
                    .encrypted_content
                    .ok_or_else(|| SealKeyError::Malformed("an encrypted part of it is empty".into()))?;
                decrypt(&info.content_enc_alg, ciphertext.as_bytes(), password, &secret)?
            }
            other => {
                return Err(SealKeyError::Malformed(format!(
                    "a part of it is protected by {other}; only password protection is supported"
                )))
            }
        };
        for bag in Vec::<SafeBag>::from_der(&bags)? {
            let value = bag_value(&bag)?;
            match bag.bag_id {
                pkcs12::PKCS_12_KEY_BAG_OID => contents.keys.push(value.to_vec()),
                pkcs12::PKCS_12_PKCS8_KEY_BAG_OID => {
                    let encrypted = EncryptedPrivateKeyInfo::from_der(value)?;
                    contents.keys.push(decrypt(
                        &encrypted.encryption_algorithm,
                        encrypted.encrypted_data.as_bytes(),
                        password,
                        &secret,
                    )?);
                }
                pkcs12::PKCS_12_CERT_BAG_OID => {
                    let bag = CertBag::from_der(value)?;
                    if bag.cert_id == pkcs12::PKCS_12_X509_CERT_OID {
                        contents.certificates.push(bag.cert_value.into_bytes());
                    }
                }
                // CRLs, secrets, nested contents: nothing a seal uses.
                _ => {}
            }
        }
    }
    Ok(contents)
}

/// The password as RFC 7292 B.1 feeds it to its key derivation: UTF-16
/// big-endian with a two-byte terminator.
fn bmp_password(password: &str) -> Vec<u8> {
    password.encode_utf16().chain([0]).flat_map(u16::to_be_bytes).collect()
}

/// A bag's value: pkcs12 0.1 keeps the `[0] EXPLICIT` wrapper around it.
fn bag_value(bag: &SafeBag) -> Result<&[u8], SealKeyError> {
    if bag.bag_value.first() == Some(&0xa0) {
        Ok(AnyRef::from_der(&bag.bag_value)?.value())
    } else {
        Ok(&bag.bag_value)
    }
}

/// Whether the MAC over `data` is the one `password` (already in the form
/// of [`bmp_password`]) makes.
fn mac_matches(mac: &MacData, password: &[u8], data: &[u8]) -> Result<bool, SealKeyError> {
    let salt = mac.mac_salt.as_bytes();
    let rounds = mac.iterations;
    let (algorithm, key) = match mac.mac.algorithm.oid {
        rfc5912::ID_SHA_1 => (
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            derive_key::<sha1::Sha1>(password, salt, Pkcs12KeyType::Mac, rounds, 20),
        ),
        rfc5912::ID_SHA_256 => (
            ring::hmac::HMAC_SHA256,
            derive_key::<sha2::Sha256>(password, salt, Pkcs12KeyType::Mac, rounds, 32),
        ),
        rfc5912::ID_SHA_384 => (
            ring::hmac::HMAC_SHA384,
            derive_key::<sha2::Sha384>(password, salt, Pkcs12KeyType::Mac, rounds, 48),
        ),
        rfc5912::ID_SHA_512 => (
            ring::hmac::HMAC_SHA512,
            derive_key::<sha2::Sha512>(password, salt, Pkcs12KeyType::Mac, rounds, 64),
        ),
        other => {
            return Err(SealKeyError::Malformed(format!(
                "its integrity check uses {other}, which is not supported"
            )))
        }
    };
    let key = ring::hmac::Key::new(algorithm, &key);
    Ok(ring::hmac::verify(&key, data, mac.mac.digest.as_bytes()).is_ok())
}

/// Decrypts a key or a part of the file. PBES2 takes the password's UTF-8
/// bytes; the PKCS#12 ciphers take `secret`, the form that matched the MAC.
fn decrypt(
    algorithm: &AlgorithmIdentifierOwned,
    ciphertext: &[u8],
    password: &str,
    secret: &[u8],
) -> Result<Vec<u8>, SealKeyError> {
    let legacy = |key_len: usize| -> Result<(Vec<u8>, Vec<u8>), SealKeyError> {
        let params: Pkcs12PbeParams = algorithm
            .parameters
            .as_ref()
            .ok_or_else(|| SealKeyError::Malformed("a PKCS#12 cipher without parameters".into()))?
            .decode_as()?;
        let salt = params.salt.as_bytes();
        let derive = |kind, len| derive_key::<sha1::Sha1>(secret, salt, kind, params.iterations, len);
        Ok((
            derive(Pkcs12KeyType::EncryptionKey, key_len),
            derive(Pkcs12KeyType::Iv, 8),
        ))
    };
    match algorithm.oid {
        pkcs5::pbes2::PBES2_OID => {
            let der = algorithm.to_der()?;
            let scheme = pkcs5::EncryptionScheme::try_from(der.as_slice())
                .map_err(|e| SealKeyError::Malformed(format!("its PBES2 parameters are not supported ({e})")))?;
            scheme
                .decrypt(password.as_bytes(), ciphertext)
                .map_err(|_| SealKeyError::WrongPassword)
        }
        pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC => {
            let (key, iv) = legacy(24)?;
            let cipher = des::TdesEde3::new_from_slice(&key).map_err(|_| SealKeyError::WrongPassword)?;
            cbc_decrypt(cipher, &iv, ciphertext)
        }
        pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC => {
            let (key, iv) = legacy(5)?;
            cbc_decrypt(rc2::Rc2::new_with_eff_key_len(&key, 40), &iv, ciphertext)
        }
        pkcs12::PKCS_12_PBE_WITH_SHAAND128_BIT_RC2_CBC => {
            let (key, iv) = legacy(16)?;
            cbc_decrypt(rc2::Rc2::new_with_eff_key_len(&key, 128), &iv, ciphertext)
        }
        other => Err(SealKeyError::Malformed(format!(
            "it is encrypted with {other}, which is not supported (AES, as `openssl pkcs12` writes by default, is)"
        ))),
    }
}

fn cbc_decrypt<C: BlockDecryptMut + BlockCipher>(
    cipher: C,
    iv: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealKeyError> {
    cbc::Decryptor::inner_iv_slice_init(cipher, iv)
        .map_err(|_| SealKeyError::Malformed("a PKCS#12 cipher with a bad IV".into()))?
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| SealKeyError::WrongPassword)
}
