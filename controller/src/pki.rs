//! The controller's own certificate authority: it signs the controller's server certificate
//! and every device's certificate, so a device is who its certificate says, and a device or
//! staff laptop can pin the controller by the CA's fingerprint.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};

use crate::domain::UnixMillis;
use crate::domain::device_cert::{self, Lifetime};
use crate::files::{write_private, write_public};
use crate::ids::random_bytes;
use haven_proto::trust::{CONTROLLER_TLS_NAME, pin_of};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("could not read or write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the file {0} is damaged or is not a certificate or key; restore it from a backup")]
    Damaged(PathBuf),
    #[error("the device's certificate request is not valid ({0}): run haven-agent enroll again")]
    BadRequest(String),
    #[error("could not make a certificate: {0}")]
    Signing(String),
    #[error(
        "the device's key is {0}, not the ECDSA P-256 key haven-agent makes: update haven-agent, or enroll the device again"
    )]
    WrongKeyType(String),
    #[error(
        "the renewal request names another device ({asked:?}), not the device whose certificate opened this stream ({device}): refused; nothing a device writes changes who it is"
    )]
    WrongIdentity { device: String, asked: String },
    #[error(
        "a renewal must bring a new key made on the device; this request reuses the current one"
    )]
    SameKey,
}

/// A device certificate just signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDevice {
    pub certificate_pem: String,
    /// SHA-256 of the certificate's DER: how the controller finds the device.
    pub fingerprint: String,
    pub not_after: crate::domain::UnixMillis,
}

/// The CA and the controller's server identity, loaded from (or created in) the data directory.
pub struct Pki {
    pub ca_pem: String,
    pub ca_pin: String,
    /// Server certificate followed by the CA, so clients receive the whole chain.
    pub server_chain_pem: String,
    pub server_key_pem: String,
    /// How long a device certificate signed from now on lives (`--device-cert-days`).
    pub device_lifetime: Lifetime,
    issuer: Issuer<'static, KeyPair>,
}

pub struct PkiPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl PkiPaths {
    pub fn in_dir(dir: &Path) -> Self {
        PkiPaths {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        }
    }
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::File {
        path: path.to_path_buf(),
        source,
    }
}

fn sign_err(e: rcgen::Error) -> PkiError {
    PkiError::Signing(e.to_string())
}

fn random_serial() -> SerialNumber {
    let mut bytes = random_bytes::<16>();
    bytes[0] &= 0x7f; // keep the serial positive
    SerialNumber::from_slice(&bytes)
}

fn year_now() -> i32 {
    i32::from(jiff::Zoned::now().year())
}

impl Pki {
    /// Loads the CA and server identity, creating whatever is missing. Returns whether the CA
    /// was created now (first start).
    pub fn load_or_create(dir: &Path, extra_names: &[String]) -> Result<(Pki, bool), PkiError> {
        let paths = PkiPaths::in_dir(dir);
        let (ca_pem, ca_key_pem, created) = match (read(&paths.ca_cert)?, read(&paths.ca_key)?) {
            (Some(cert), Some(key)) => (cert, key, false),
            (None, None) => {
                let (cert, key) = new_ca()?;
                write_private(&paths.ca_key, key.as_bytes()).map_err(file_err(&paths.ca_key))?;
                write_public(&paths.ca_cert, cert.as_bytes()).map_err(file_err(&paths.ca_cert))?;
                (cert, key, true)
            }
            // Half a CA is never silently replaced: every device trusts the old one.
            (Some(_), None) => return Err(PkiError::Damaged(paths.ca_key)),
            (None, Some(_)) => return Err(PkiError::Damaged(paths.ca_cert)),
        };
        let ca_key =
            KeyPair::from_pem(&ca_key_pem).map_err(|_| PkiError::Damaged(paths.ca_key.clone()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
            .map_err(|_| PkiError::Damaged(paths.ca_cert.clone()))?;
        let ca_der = pem_to_der(&ca_pem).ok_or_else(|| PkiError::Damaged(paths.ca_cert.clone()))?;

        let (server_pem, server_key_pem) =
            match (read(&paths.server_cert)?, read(&paths.server_key)?) {
                (Some(cert), Some(key)) if !created => (cert, key),
                _ => {
                    let (cert, key) = new_server_cert(&issuer, extra_names)?;
                    write_private(&paths.server_key, key.as_bytes())
                        .map_err(file_err(&paths.server_key))?;
                    write_public(&paths.server_cert, cert.as_bytes())
                        .map_err(file_err(&paths.server_cert))?;
                    (cert, key)
                }
            };
        Ok((
            Pki {
                ca_pin: pin_of(&ca_der),
                server_chain_pem: format!("{}{}", server_pem.trim_end(), "\n") + &ca_pem,
                server_key_pem,
                ca_pem,
                device_lifetime: Lifetime::default(),
                issuer,
            },
            created,
        ))
    }

    /// Signs a device's certificate request at enrollment. The subject is set here (the
    /// device id), whatever the request asked for; the certificate is only good for client
    /// authentication and lives [`Pki::device_lifetime`].
    pub fn sign_device(
        &self,
        csr_pem: &str,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<SignedDevice, PkiError> {
        let csr = parse_request(csr_pem)?;
        self.sign(csr, device_id, now)
    }

    /// Signs a renewal asked for on the `Sync` stream opened with `current_der`, the verified
    /// certificate of device `device_id` (found by its fingerprint). The request must carry a
    /// new ECDSA P-256 key and name no other device; the new certificate has the same subject
    /// as the old one, so the device stays who it was.
    pub fn sign_renewal(
        &self,
        csr_pem: &str,
        device_id: &str,
        current_der: &[u8],
        now: UnixMillis,
    ) -> Result<SignedDevice, PkiError> {
        let csr = parse_request(csr_pem)?;
        let current = certificate_facts(current_der).ok_or_else(|| {
            PkiError::BadRequest("the stream's certificate cannot be read".into())
        })?;
        // The certificate that opened the stream must be this device's own: the store found
        // the device by its fingerprint, and its subject says the same id.
        if current.common_name.as_deref() != Some(device_id) {
            return Err(PkiError::WrongIdentity {
                device: device_id.to_string(),
                asked: current.common_name.unwrap_or_default(),
            });
        }
        let asked = common_name(&csr.params.distinguished_name);
        if asked.as_deref().is_some_and(|cn| cn != device_id)
            || !csr.params.subject_alt_names.is_empty()
        {
            return Err(PkiError::WrongIdentity {
                device: device_id.to_string(),
                asked: asked.unwrap_or_else(|| "other names".into()),
            });
        }
        if csr.public_key.der_bytes() == current.public_key.as_slice() {
            return Err(PkiError::SameKey);
        }
        self.sign(csr, device_id, now)
    }

    fn sign(
        &self,
        mut csr: CertificateSigningRequestParams,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<SignedDevice, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device_id);
        dn.push(DnType::OrganizationName, "Haven device");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(random_serial());
        let (not_before, not_after) = device_cert::validity(now, self.device_lifetime);
        // rcgen takes `time`'s type, which this crate does not name: count from the epoch.
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + whole_seconds(not_before);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + whole_seconds(not_after);
        csr.params = params;
        let cert = csr.signed_by(&self.issuer).map_err(sign_err)?;
        let not_after = not_after_of(cert.der())
            .ok_or_else(|| PkiError::Signing("the new certificate cannot be read back".into()))?;
        Ok(SignedDevice {
            certificate_pem: cert.pem(),
            fingerprint: pin_of(cert.der()),
            not_after,
        })
    }
}

/// Parses a device's request (its signature is checked) and refuses any key but the ECDSA
/// P-256 one haven-agent makes: one key type, one set of tests.
fn parse_request(csr_pem: &str) -> Result<CertificateSigningRequestParams, PkiError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| PkiError::BadRequest(e.to_string()))?;
    if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        let name = if csr.public_key.algorithm() == &rcgen::PKCS_ED25519 {
            "Ed25519"
        } else if csr.public_key.algorithm() == &rcgen::PKCS_ECDSA_P384_SHA384 {
            "ECDSA P-384"
        } else {
            "another kind of key"
        };
        return Err(PkiError::WrongKeyType(name.into()));
    }
    Ok(csr)
}

fn common_name(dn: &DistinguishedName) -> Option<String> {
    match dn.get(&DnType::CommonName)? {
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_string()),
        // Any other encoding is not what haven-agent writes: it names something else.
        _ => Some("(unreadable name)".into()),
    }
}

/// A Unix time in milliseconds as whole seconds since the epoch (certificates hold seconds).
fn whole_seconds(ms: UnixMillis) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(ms.max(0) / 1000).unwrap_or(0))
}

/// What the controller reads from a certificate it signed.
struct CertificateFacts {
    common_name: Option<String>,
    public_key: Vec<u8>,
}

fn certificate_facts(der: &[u8]) -> Option<CertificateFacts> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Some(CertificateFacts {
        common_name,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// When a certificate (DER) stops being valid, in Unix milliseconds.
pub fn not_after_of(der: &[u8]) -> Option<UnixMillis> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.validity().not_after.timestamp().checked_mul(1000)
}

fn new_ca() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(sign_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Haven controller CA");
    dn.push(DnType::OrganizationName, "Haven");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    let year = year_now();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 30, 1, 1);
    let cert = params.self_signed(&key).map_err(sign_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_server_cert(
    issuer: &Issuer<'static, KeyPair>,
    extra_names: &[String],
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(sign_err)?;
    let mut names = vec![CONTROLLER_TLS_NAME.to_string(), "localhost".to_string()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(sign_err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Haven controller");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(random_serial());
    let year = year_now();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 20, 1, 1);
    let cert = params.signed_by(&key, issuer).map_err(sign_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The DER bytes of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_start_reuses_the_ca_and_signs_device_requests() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert!(created);
        let (second, created_again) = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert!(!created_again);
        assert_eq!(first.ca_pin, second.ca_pin);
        assert_eq!(first.server_chain_pem, second.server_chain_pem);

        let device_key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec![])
            .unwrap()
            .serialize_request(&device_key)
            .unwrap()
            .pem()
            .unwrap();
        let signed = second.sign_device(&csr, "dev-123", NOW).unwrap();
        assert!(
            signed
                .certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(
            signed.fingerprint,
            pin_of(&pem_to_der(&signed.certificate_pem).unwrap())
        );
        assert!(matches!(
            second.sign_device("not a csr", "dev-1", NOW),
            Err(PkiError::BadRequest(_))
        ));
    }

    const NOW: UnixMillis = 1_780_000_000_000;

    fn csr_for(key: &KeyPair, common_name: &str) -> String {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    fn p256() -> KeyPair {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    }

    fn enrolled(pki: &Pki, device: &str) -> SignedDevice {
        pki.sign_device(&csr_for(&p256(), "haven-agent"), device, NOW)
            .unwrap()
    }

    #[test]
    fn d7_device_certificates_live_the_configured_lifetime_not_eleven_years() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pki, _) = Pki::load_or_create(dir.path(), &[]).unwrap();
        let signed = enrolled(&pki, "dev-1");
        assert_eq!(signed.not_after, NOW + 30 * 24 * 3_600_000);
        pki.device_lifetime = Lifetime::seconds(6);
        let short = enrolled(&pki, "dev-1");
        assert_eq!(short.not_after, NOW + 6_000);
        assert_eq!(
            not_after_of(&pem_to_der(&short.certificate_pem).unwrap()),
            Some(NOW + 6_000)
        );
    }

    #[test]
    fn d7_a_renewal_keeps_the_device_and_needs_a_new_p256_key() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::load_or_create(dir.path(), &[]).unwrap();
        let old_key = p256();
        let old = pki
            .sign_device(&csr_for(&old_key, "haven-agent"), "dev-1", NOW)
            .unwrap();
        let old_der = pem_to_der(&old.certificate_pem).unwrap();
        let renewed = pki
            .sign_renewal(&csr_for(&p256(), "dev-1"), "dev-1", &old_der, NOW + 1)
            .unwrap();
        let facts = certificate_facts(&pem_to_der(&renewed.certificate_pem).unwrap()).unwrap();
        assert_eq!(facts.common_name.as_deref(), Some("dev-1"));
        assert_ne!(renewed.fingerprint, old.fingerprint);
        // The same key again is not a renewal.
        assert!(matches!(
            pki.sign_renewal(&csr_for(&old_key, "dev-1"), "dev-1", &old_der, NOW),
            Err(PkiError::SameKey)
        ));
    }

    #[test]
    fn d7_a_renewal_with_another_key_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::load_or_create(dir.path(), &[]).unwrap();
        let old = enrolled(&pki, "dev-1");
        let old_der = pem_to_der(&old.certificate_pem).unwrap();
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let key = KeyPair::generate_for(alg).unwrap();
            let e = pki
                .sign_renewal(&csr_for(&key, "dev-1"), "dev-1", &old_der, NOW)
                .unwrap_err();
            assert!(matches!(e, PkiError::WrongKeyType(_)), "{e}");
            // Enrollment refuses it too.
            assert!(matches!(
                pki.sign_device(&csr_for(&key, "haven-agent"), "dev-2", NOW),
                Err(PkiError::WrongKeyType(_))
            ));
        }
    }

    #[test]
    fn d7_a_renewal_for_another_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = Pki::load_or_create(dir.path(), &[]).unwrap();
        let mine = enrolled(&pki, "dev-1");
        let mine_der = pem_to_der(&mine.certificate_pem).unwrap();
        // Asking, on my stream, for a certificate naming another device.
        let e = pki
            .sign_renewal(&csr_for(&p256(), "dev-2"), "dev-1", &mine_der, NOW)
            .unwrap_err();
        assert!(matches!(e, PkiError::WrongIdentity { .. }), "{e}");
        assert!(e.to_string().contains("dev-2"));
        // Extra names in the request are refused too.
        let mut params = CertificateParams::new(vec!["controller.haven.internal".into()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "dev-1");
        let with_names = params.serialize_request(&p256()).unwrap().pem().unwrap();
        assert!(matches!(
            pki.sign_renewal(&with_names, "dev-1", &mine_der, NOW),
            Err(PkiError::WrongIdentity { .. })
        ));
        // A stream whose certificate is another device's cannot renew as this one.
        let other = enrolled(&pki, "dev-2");
        let other_der = pem_to_der(&other.certificate_pem).unwrap();
        assert!(matches!(
            pki.sign_renewal(&csr_for(&p256(), "dev-1"), "dev-1", &other_der, NOW),
            Err(PkiError::WrongIdentity { .. })
        ));
    }

    #[test]
    fn half_a_ca_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        Pki::load_or_create(dir.path(), &[]).unwrap();
        std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
        assert!(matches!(
            Pki::load_or_create(dir.path(), &[]),
            Err(PkiError::Damaged(_))
        ));
    }
}
