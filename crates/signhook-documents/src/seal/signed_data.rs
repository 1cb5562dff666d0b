//! The signature value: a detached CMS SignedData (RFC 5652) as PAdES
//! baseline B-B wants it (ETSI EN 319 142-1 6.3, EN 319 122-1 5.2):
//!
//! - one SignerInfo, identified by issuer and serial number;
//! - signed attributes content-type (id-data), message-digest (of the PDF's
//!   byte ranges) and ESS signing-certificate-v2 (RFC 5035), which binds the
//!   signer's certificate to the signature;
//! - no signing-time attribute: PAdES carries the time in the signature
//!   dictionary's /M instead;
//! - the certificate chain in `certificates`.

use super::keys::Sealer;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::db::rfc5911;
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::{GeneralName, GeneralNames};
use x509_cert::serial_number::SerialNumber;

/// `SigningCertificateV2` (RFC 5035 3), without the optional policies.
#[derive(Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

/// `ESSCertIDv2`. Its `hashAlgorithm` defaults to SHA-256, which is the
/// one used, so DER leaves it out.
#[derive(Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
    issuer_serial: IssuerSerial,
}

/// `IssuerSerial` (RFC 5035): the signer's certificate's issuer, as a
/// directory name, and serial number.
#[derive(Sequence)]
struct IssuerSerial {
    issuer: GeneralNames,
    serial_number: SerialNumber,
}

/// The DER `ContentInfo` holding the SignedData over content whose digest
/// (with the sealer's digest algorithm) is `message_digest`.
pub(super) fn signed_data(sealer: &Sealer, message_digest: &[u8]) -> Result<Vec<u8>, String> {
    build(sealer, message_digest).map_err(|e| e.to_string())
}

fn build(sealer: &Sealer, message_digest: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let leaf = sealer.leaf();
    let digest_algorithm = AlgorithmIdentifierOwned {
        oid: sealer.digest().oid(),
        // RFC 5754 3: absent, not NULL.
        parameters: None,
    };
    let leaf_hash = ring::digest::digest(&ring::digest::SHA256, &leaf.to_der()?);
    let signing_certificate = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            cert_hash: OctetString::new(leaf_hash.as_ref())?,
            issuer_serial: IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(leaf.tbs_certificate.issuer.clone())],
                serial_number: leaf.tbs_certificate.serial_number.clone(),
            },
        }],
    };
    let signed_attributes: SignedAttributes = SetOfVec::try_from(vec![
        attribute(rfc5911::ID_CONTENT_TYPE, Any::encode_from(&rfc5911::ID_DATA)?)?,
        attribute(
            rfc5911::ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(message_digest)?)?,
        )?,
        attribute(
            rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2,
            Any::encode_from(&signing_certificate)?,
        )?,
    ])?;
    // RFC 5652 5.4: the signature covers the attributes' DER with the
    // SET OF tag, not the [0] they are written with.
    let signature = sealer
        .sign(&signed_attributes.to_der()?)
        .map_err(|_| "the signing key refused to sign")?;
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: leaf.tbs_certificate.issuer.clone(),
            serial_number: leaf.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_algorithm.clone(),
        signed_attrs: Some(signed_attributes),
        signature_algorithm: sealer.signature_algorithm()?,
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };
    let certificates = sealer
        .chain()
        .iter()
        .cloned()
        .map(CertificateChoices::Certificate)
        .collect::<Vec<_>>();
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_algorithm])?,
        // Detached: the content is the PDF around the signature.
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet::try_from(certificates)?),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer])?,
    };
    let content_info = ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    };
    Ok(content_info.to_der()?)
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, der::Error> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value])?,
    })
}
