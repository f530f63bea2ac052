//! HTTPS for the RBAC mode. client-go (kubectl, Helm) sends bearer tokens and impersonation
//! headers only to `https://` servers, and a real API server authenticates only on its secure
//! port, so with RBAC on the server makes a CA and a serving certificate for `127.0.0.1` and
//! `localhost` at start (ECDSA P-256, in memory only) and serves HTTP/1.1 over TLS. The CA goes
//! into the written kubeconfig (`certificate-authority-data`) and into the library's clients.

use std::sync::Arc;

use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// The CA and the TLS acceptor of one server.
pub struct Tls {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub acceptor: TlsAcceptor,
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

pub fn generate() -> Result<Tls, String> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err("CA parameters"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "local-apiserver-ca");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().map_err(err("CA key"))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err("CA certificate"))?;

    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(err("serving certificate parameters"))?;
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate().map_err(err("serving key"))?;
    let cert = params.signed_by(&key, &ca).map_err(err("serving certificate"))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { ca_pem: ca.pem(), ca_der: ca.der().to_vec(), acceptor: TlsAcceptor::from(Arc::new(config)) })
}

/// Serves `app` over TLS until `shutdown` fires; the connections end with the task.
pub async fn serve(listener: TcpListener, app: Router, acceptor: TlsAcceptor, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let app = app.clone();
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let io = hyper_util::rt::TokioIo::new(tls);
                    if let Err(e) =
                        hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await
                    {
                        tracing::debug!(error = %e, "local-apiserver TLS connection ended");
                    }
                });
            }
        }
    }
}

/// Standard base64 with padding (kubeconfig `*-data` fields).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_with_padding() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }
}
