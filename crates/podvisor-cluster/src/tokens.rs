//! Service-account tokens: JSON Web Tokens with the claims the API server puts in a bound
//! token (`sub: system:serviceaccount:<ns>:<name>`, and under `kubernetes.io` the namespace,
//! the service account and the pod it is bound to), signed with HMAC-SHA256 under a key kept
//! `0600` in the data directory.
//!
//! A token names its pod's UID, so it stops working when the pod is gone, as a bound token
//! does. The kubelet's own request (3607 s, for the `kube-api-access-*` volume) is extended to
//! a year, as the API server's `--service-account-extend-token-expiration` does by default;
//! other requests get the lifetime they ask for (at least 10 minutes).

use std::path::Path;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// The issuer and audience of tokens, as a cluster's default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The lifetime the kubelet asks for the token of a `kube-api-access-*` volume.
pub const KUBELET_EXPIRATION: i64 = 3607;

/// What that request is extended to.
const EXTENDED: i64 = 365 * 24 * 3600;

/// The shortest lifetime a token is issued for (the API server's minimum).
pub const MIN_EXPIRATION: i64 = 600;

/// The name and UID of an object a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: Bound,
    /// The pod the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Bound>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer.
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// The audiences.
    pub aud: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// Who and what the token is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The claims of a token for service account `sa` in `namespace`, bound to `pod` if given,
    /// issued at `now` for `expiration` seconds (see the module's note on lifetimes).
    pub fn new(
        namespace: &str,
        sa: Bound,
        pod: Option<Bound>,
        audiences: Vec<String>,
        now: i64,
        expiration: i64,
    ) -> Claims {
        let lifetime = if expiration == KUBELET_EXPIRATION { EXTENDED } else { expiration.max(MIN_EXPIRATION) };
        Claims {
            iss: ISSUER.to_string(),
            sub: format!("system:serviceaccount:{namespace}:{}", sa.name),
            aud: if audiences.is_empty() { vec![ISSUER.to_string()] } else { audiences },
            iat: now,
            nbf: now,
            exp: now.saturating_add(lifetime),
            kubernetes: KubernetesClaims { namespace: namespace.to_string(), serviceaccount: sa, pod },
        }
    }
}

/// Why a token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or the parts do not read.
    #[error("not a token")]
    Malformed,
    /// The signature is not this issuer's.
    #[error("invalid signature")]
    Signature,
    /// Outside its lifetime.
    #[error("token has expired")]
    Expired,
    /// Not for this API.
    #[error("token audiences do not include this API")]
    Audience,
}

/// The key that signs and checks tokens.
pub struct Issuer {
    key: hmac::Key,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issuer")
    }
}

/// The JOSE header of every token.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl Issuer {
    /// An issuer with this key.
    pub fn from_key(key: &[u8]) -> Issuer {
        Issuer { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    /// Reads the key at `path`, making a random one (`0600`) first when there is none.
    pub fn load_or_create(path: &Path) -> std::io::Result<Issuer> {
        match std::fs::read(path) {
            Ok(key) if key.len() >= 32 => {
                podvisor_runtime::files::make_private(path)?;
                Ok(Issuer::from_key(&key))
            }
            Ok(_) | Err(_) => {
                let mut key = [0u8; 32];
                aws_lc_rs::rand::fill(&mut key).map_err(|_| std::io::Error::other("no randomness for a token key"))?;
                podvisor_runtime::files::write_private(path, &key)?;
                Ok(Issuer::from_key(&key))
            }
        }
    }

    /// Signs `claims` into a token.
    pub fn issue(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{}.{}", B64.encode(HEADER), B64.encode(body));
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", B64.encode(tag.as_ref()))
    }

    /// The claims of `token` if this issuer signed it, it is within its lifetime at `now`
    /// and one of its audiences is this API's. Whether what it is bound to still exists is
    /// the caller's to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..header.len() + 1 + body.len()];
        hmac::verify(&self.key, signed.as_bytes(), &sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&B64.decode(body).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if now < claims.nbf || now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if !claims.aud.iter().any(|a| a == ISSUER) {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64, expiration: i64) -> Claims {
        let sa = Bound { name: "default".into(), uid: "u1".into() };
        Claims::new("ns", sa, Some(Bound { name: "p".into(), uid: "u2".into() }), vec![], now, expiration)
    }

    #[test]
    fn a_token_verifies_with_its_key_only_and_within_its_lifetime() {
        let issuer = Issuer::from_key(&[7; 32]);
        let c = claims(1000, 3600);
        let token = issuer.issue(&c);
        assert_eq!(issuer.verify(&token, 1000), Ok(c.clone()));
        assert_eq!(c.sub, "system:serviceaccount:ns:default");
        assert_eq!(issuer.verify(&token, 4600), Err(TokenError::Expired));
        assert_eq!(issuer.verify(&token, 999), Err(TokenError::Expired));
        assert_eq!(Issuer::from_key(&[8; 32]).verify(&token, 1000), Err(TokenError::Signature));
        // A changed claim breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(serde_json::to_vec(&claims(1000, 999_999)).unwrap());
        parts[1] = &forged;
        assert_eq!(issuer.verify(&parts.join("."), 1000), Err(TokenError::Signature));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(issuer.verify(bad, 1000).is_err(), "{bad}");
        }
    }

    #[test]
    fn lifetimes_are_extended_for_the_kubelet_and_floored_for_others() {
        assert_eq!(claims(0, KUBELET_EXPIRATION).exp, EXTENDED);
        assert_eq!(claims(0, 60).exp, MIN_EXPIRATION);
        assert_eq!(claims(i64::MAX - 5, i64::MAX).exp, i64::MAX, "saturates");
        let other = Claims::new("ns", Bound { name: "a".into(), uid: "u".into() }, None, vec!["vault".into()], 0, 3600);
        let issuer = Issuer::from_key(&[1; 32]);
        assert_eq!(issuer.verify(&issuer.issue(&other), 1), Err(TokenError::Audience));
    }

    #[test]
    fn the_key_file_is_private_and_kept() {
        let dir = std::env::temp_dir().join(format!("podvisor-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sa.key");
        let token = Issuer::load_or_create(&path).unwrap().issue(&claims(5, 3600));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(Issuer::load_or_create(&path).unwrap().verify(&token, 6).is_ok(), "the same key is read back");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
