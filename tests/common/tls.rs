//! Certificates generated per test run (nothing checked in): a CA, a server
//! certificate for 127.0.0.1 and localhost, and a client certificate, all signed by the
//! CA; and a second, unrelated CA for "wrong CA" tests.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

pub struct Certs {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// A CA that signed nothing here.
    pub other_ca_pem: String,
}

fn ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(names: &[&str], cn: &str, ca: &(Certificate, KeyPair)) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Certs {
    /// Generates the certificates and writes them as PEM files into `dir`.
    pub fn generate(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        let authority = ca("tower-redis-session test CA");
        let (server_cert, server_key) = leaf(&["127.0.0.1", "localhost"], "redis", &authority);
        let (client_cert, client_key) = leaf(&[], "session-client", &authority);
        let other = ca("an unrelated CA");
        let certs = Certs {
            dir: dir.to_owned(),
            ca_pem: authority.0.pem(),
            client_cert_pem: client_cert,
            client_key_pem: client_key,
            other_ca_pem: other.0.pem(),
        };
        for (name, pem) in [
            ("ca.crt", &certs.ca_pem),
            ("server.crt", &server_cert),
            ("server.key", &server_key),
            ("client.crt", &certs.client_cert_pem),
            ("client.key", &certs.client_key_pem),
            ("other-ca.crt", &certs.other_ca_pem),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        certs
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// `redis-server` arguments for a TLS port with these certificates; `clients` is
    /// `tls-auth-clients` (`no`, `optional` or `yes`).
    pub fn server_args(&self, tls_port: u16, clients: &str) -> Vec<String> {
        [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &self.path("server.crt"),
            "--tls-key-file",
            &self.path("server.key"),
            "--tls-ca-cert-file",
            &self.path("ca.crt"),
            "--tls-auth-clients",
            clients,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}
