//! The controller's own certificate authority: it signs the controller's server certificate
//! and every device's certificate, so a device is who its certificate says, and a device or
//! staff laptop can pin the controller by the CA's fingerprint.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

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
}

/// The CA and the controller's server identity, loaded from (or created in) the data directory.
pub struct Pki {
    pub ca_pem: String,
    pub ca_pin: String,
    /// Server certificate followed by the CA, so clients receive the whole chain.
    pub server_chain_pem: String,
    pub server_key_pem: String,
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
                issuer,
            },
            created,
        ))
    }

    /// Signs a device's certificate request. The subject is set here (the device id), whatever
    /// the request asked for; the certificate is only good for client authentication.
    /// Returns the certificate PEM and its fingerprint.
    pub fn sign_device(
        &self,
        csr_pem: &str,
        device_id: &str,
    ) -> Result<(String, String), PkiError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadRequest(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device_id);
        dn.push(DnType::OrganizationName, "Haven device");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(random_serial());
        let year = year_now();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
        csr.params = params;
        let cert = csr.signed_by(&self.issuer).map_err(sign_err)?;
        Ok((cert.pem(), pin_of(cert.der())))
    }
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
        let (cert, fingerprint) = second.sign_device(&csr, "dev-123").unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(fingerprint, pin_of(&pem_to_der(&cert).unwrap()));
        assert!(matches!(
            second.sign_device("not a csr", "dev-1"),
            Err(PkiError::BadRequest(_))
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
