//! Bearer tokens: JWT checks, roles and permissions.
//!
//! Tokens are signed with HS256 (a shared secret) or RS256 (a key pair). The algorithm is
//! pinned by the config, so a token naming another algorithm (including `none`) fails, and
//! `exp`, `nbf`, `iss`, `aud` and `sub` are all required.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// A role a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    ItManager,
    SecurityEngineer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Operator,
        Role::ItManager,
        Role::SecurityEngineer,
    ];

    /// Returns true when the role grants `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::VmRead => true,
            Permission::VmWrite => matches!(self, Role::Admin | Role::Operator),
        }
    }

    /// Returns the role's name as tokens carry it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::ItManager => "it_manager",
            Role::SecurityEngineer => "security_engineer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == name)
            .ok_or_else(|| {
                format!("unknown role `{name}`: expected admin, operator, it_manager or security_engineer")
            })
    }
}

/// A permission an action requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Reading monitoring data (`vm:read`), held by every role.
    VmRead,
    /// Changing state: acknowledging alerts, forcing a collection. Held by admin and operator.
    VmWrite,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::VmRead => "vm:read",
            Permission::VmWrite => "vm:write",
        }
    }
}

/// The claims vmpulse reads from and writes to a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
}

/// The claims read after jsonwebtoken has checked `exp`, `nbf`, `iss` and `aud`. Only
/// these two are read here, so other valid forms of the standard claims (an `aud` array,
/// a fractional `exp`, no `iat`) and extra claims are accepted.
#[derive(Debug, Deserialize)]
struct Identity {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

/// The caller a valid token identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

/// The reason a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token in the request")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// An error in the `[auth]` config or its key files.
#[derive(Debug, thiserror::Error)]
#[error("auth: {0}")]
pub struct AuthSetupError(String);

/// Checks and mints tokens for one `[auth]` config.
pub struct Authenticator {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Reads the keys `config` names: the HS256 secret from its environment variable, or the
    /// RS256 key files.
    ///
    /// # Errors
    ///
    /// [`AuthSetupError`] naming the missing variable or unreadable file.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthSetupError> {
        if let Some(variable) = &config.hs256_secret_env {
            let secret = std::env::var(variable).map_err(|_| {
                AuthSetupError(format!(
                    "the environment variable {variable} (hs256_secret_env) is not set"
                ))
            })?;
            return Self::hs256(secret.as_bytes(), config);
        }
        let Some(public_file) = &config.rs256_public_key_file else {
            return Err(AuthSetupError(
                "set hs256_secret_env or rs256_public_key_file".to_owned(),
            ));
        };
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|err| {
                AuthSetupError(format!("cannot read key file {}: {err}", path.display()))
            })
        };
        let public = read(public_file)?;
        let decoding = DecodingKey::from_rsa_pem(&public).map_err(|err| {
            AuthSetupError(format!(
                "{} is not an RSA public key in PEM: {err}",
                public_file.display()
            ))
        })?;
        let encoding = match &config.rs256_private_key_file {
            Some(private_file) => {
                let private = read(private_file)?;
                Some(EncodingKey::from_rsa_pem(&private).map_err(|err| {
                    AuthSetupError(format!(
                        "{} is not an RSA private key in PEM: {err}",
                        private_file.display()
                    ))
                })?)
            }
            None => None,
        };
        Ok(Self::new(Algorithm::RS256, decoding, encoding, config))
    }

    /// Builds an HS256 authenticator from a secret.
    ///
    /// # Errors
    ///
    /// [`AuthSetupError`] when the secret is shorter than 32 bytes, which HS256 needs to be
    /// as strong as its hash.
    pub fn hs256(secret: &[u8], config: &AuthConfig) -> Result<Self, AuthSetupError> {
        if secret.len() < 32 {
            return Err(AuthSetupError(format!(
                "the HS256 secret has {} bytes; use at least 32",
                secret.len()
            )));
        }
        let key_error = |err: jsonwebtoken::errors::Error| {
            AuthSetupError(format!("the HS256 secret is not usable: {err}"))
        };
        let decoding = DecodingKey::from_secret(secret).map_err(key_error)?;
        let encoding = EncodingKey::from_secret(secret).map_err(key_error)?;
        Ok(Self::new(
            Algorithm::HS256,
            decoding,
            Some(encoding),
            config,
        ))
    }

    fn new(
        algorithm: Algorithm,
        decoding: DecodingKey,
        encoding: Option<EncodingKey>,
        config: &AuthConfig,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway_secs;
        Self {
            algorithm,
            decoding,
            encoding,
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }
    }

    /// Checks a token's signature, algorithm, times, issuer and audience.
    ///
    /// # Errors
    ///
    /// [`AuthError`] saying which check failed; the token itself is never part of it.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Identity>(token, &self.decoding, &self.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".to_owned()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".to_owned()),
                ErrorKind::InvalidAlgorithm => {
                    AuthError::Invalid("algorithm not accepted".to_owned())
                }
                ErrorKind::InvalidSignature => {
                    AuthError::Invalid("signature does not match".to_owned())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("claim `{claim}` is missing"))
                }
                _ => AuthError::Invalid("malformed token".to_owned()),
            })?;
        let Identity { sub, role } = data.claims;
        let subject = sub
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| AuthError::Invalid("claim `sub` is missing or empty".to_owned()))?;
        let role = role
            .ok_or_else(|| AuthError::Invalid("claim `role` is missing".to_owned()))?
            .parse::<Role>()
            .map_err(AuthError::Invalid)?;
        Ok(Principal { subject, role })
    }

    /// Mints a token for `subject` with `role`, valid from now for `lifetime`.
    ///
    /// # Errors
    ///
    /// [`AuthSetupError`] when no signing key is configured (RS256 without a private key).
    pub fn mint(
        &self,
        subject: &str,
        role: Role,
        lifetime: Duration,
    ) -> Result<String, AuthSetupError> {
        let Some(encoding) = &self.encoding else {
            return Err(AuthSetupError(
                "minting RS256 tokens needs rs256_private_key_file".to_owned(),
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now.saturating_add(lifetime.as_secs()),
            nbf: now,
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, encoding)
            .map_err(|err| AuthSetupError(format!("cannot sign the token: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        Authenticator::hs256(&[7; 32], &AuthConfig::default()).expect("32-byte secret")
    }

    #[test]
    fn minted_token_verifies() {
        let auth = authenticator();
        let token = auth
            .mint("alice", Role::ItManager, Duration::from_secs(60))
            .expect("HS256 can mint");
        let principal = auth.verify(&token).expect("fresh token");
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.role, Role::ItManager);
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7; 32]).unwrap(),
        )
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn standard_claim_forms_accepted() {
        let now = now();
        let token = sign(serde_json::json!({
            "sub": "carol",
            "role": "operator",
            "iss": "vmpulse",
            "aud": ["other", "vmpulse-api"],
            "exp": now as f64 + 60.5,
            "nbf": now - 1,
            "tenant": "lab",
        }));
        let principal = authenticator()
            .verify(&token)
            .expect("valid claims without iat");
        assert_eq!(principal.role, Role::Operator);
    }

    #[test]
    fn unknown_role_named() {
        let now = now();
        let token = sign(serde_json::json!({
            "sub": "mallory", "role": "root", "iss": "vmpulse", "aud": "vmpulse-api",
            "exp": now + 60, "nbf": now,
        }));
        let error = authenticator().verify(&token).unwrap_err();
        assert!(
            matches!(&error, AuthError::Invalid(text) if text.contains("unknown role `root`")),
            "{error}"
        );
    }

    #[test]
    fn short_secret_rejected() {
        assert!(Authenticator::hs256(b"short", &AuthConfig::default()).is_err());
    }

    #[test]
    fn other_audience_rejected() {
        let other = AuthConfig {
            audience: "elsewhere".to_owned(),
            ..AuthConfig::default()
        };
        let foreign = Authenticator::hs256(&[7; 32], &other).expect("32-byte secret");
        let token = foreign
            .mint("bob", Role::Admin, Duration::from_secs(60))
            .expect("HS256 can mint");
        assert_eq!(
            authenticator().verify(&token),
            Err(AuthError::Invalid("wrong audience".to_owned()))
        );
    }

    #[test]
    fn write_needs_admin_or_operator() {
        assert!(Role::Admin.allows(Permission::VmWrite));
        assert!(Role::Operator.allows(Permission::VmWrite));
        assert!(!Role::ItManager.allows(Permission::VmWrite));
        assert!(!Role::SecurityEngineer.allows(Permission::VmWrite));
        assert!(Role::ALL.iter().all(|role| role.allows(Permission::VmRead)));
    }
}
