//! Who may append: writers named in a file (`--writers`), each by a bearer
//! token's SHA-256 or by a client certificate's SHA-256 (mutual TLS).
//!
//! In opaque mode nothing in an entry says who wrote it, so anonymous
//! appends are off unless asked for. Gatelog entries carry their
//! signer's signature, so anonymous transport is allowed there by default.
//!
//! The file holds digests, never tokens, so reading it gives nobody a
//! writer's power:
//!
//! ```text
//! # NAME  token-sha256:HEX | cert-sha256:HEX
//! hr-sync    token-sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b
//! deployer   cert-sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```

use std::collections::HashMap;
use std::path::Path;

use hyper::header::AUTHORIZATION;
use hyper::{Request, StatusCode};
use sha2::{Digest, Sha256};

use super::access_log::ClientCert;
use super::ApiError;
use crate::tlog::merkle::hex;

/// The writers a log knows, and whether others may append.
#[derive(Debug, Default)]
pub struct Writers {
    /// SHA-256 of a token (hex) → writer name.
    tokens: HashMap<String, String>,
    /// SHA-256 of a client certificate (hex) → writer name.
    certs: HashMap<String, String>,
    /// Appends without a known writer are taken.
    pub anonymous: bool,
}

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    Named(String),
    Anonymous,
}

impl Writers {
    /// Only anonymous writers (or none).
    pub fn anonymous(allowed: bool) -> Writers {
        Writers {
            anonymous: allowed,
            ..Writers::default()
        }
    }

    /// Reads a writers file (format in the module docs).
    pub fn load(path: &Path, anonymous: bool) -> anyhow::Result<Writers> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading writers file {}: {e}", path.display()))?;
        Writers::parse(&text, anonymous)
            .map_err(|e| anyhow::anyhow!("writers file {}: {e}", path.display()))
    }

    /// Parses a writers file.
    pub fn parse(text: &str, anonymous: bool) -> Result<Writers, String> {
        let mut w = Writers::anonymous(anonymous);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |m: &str| format!("line {}: {m}", n + 1);
            let mut fields = line.split_whitespace();
            let (Some(name), Some(credential), None) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(fail("want NAME token-sha256:HEX or NAME cert-sha256:HEX"));
            };
            if name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
            {
                return Err(fail("a writer name is 1-64 of A-Z a-z 0-9 . _ - @"));
            }
            let (table, hex) = if let Some(h) = credential.strip_prefix("token-sha256:") {
                (&mut w.tokens, h)
            } else if let Some(h) = credential.strip_prefix("cert-sha256:") {
                (&mut w.certs, h)
            } else {
                return Err(fail("a credential is token-sha256:HEX or cert-sha256:HEX"));
            };
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail("a SHA-256 is 64 hex digits"));
            }
            if table
                .insert(hex.to_ascii_lowercase(), name.to_string())
                .is_some()
            {
                return Err(fail("this credential is listed twice"));
            }
        }
        Ok(w)
    }

    /// How many writers are named.
    pub fn len(&self) -> usize {
        self.tokens.len() + self.certs.len()
    }

    /// Whether no writer is named.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writers named by a bearer token.
    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Writers named by a client certificate.
    pub fn has_certificates(&self) -> bool {
        !self.certs.is_empty()
    }

    /// Who sent `req`: a bearer token must be known (a wrong token is never
    /// taken as anonymous); else a known client certificate names its
    /// writer; else the request is anonymous, if that is allowed.
    pub fn authenticate<B>(&self, req: &Request<B>) -> Result<Writer, ApiError> {
        if let Some(value) = req.headers().get(AUTHORIZATION) {
            // The scheme name is case-insensitive (RFC 9110, 11.1).
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, token)| {
                    scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
                })
                .map(|(_, token)| token)
                .ok_or_else(|| {
                    unauthorized(
                        "bad_authorization",
                        "the Authorization header must be `Bearer TOKEN`",
                    )
                })?;
            let digest = hex(&Sha256::digest(token.trim().as_bytes()));
            return self
                .tokens
                .get(&digest)
                .map(|name| Writer::Named(name.clone()))
                .ok_or_else(|| {
                    unauthorized("unknown_token", "this token names no writer of this log")
                });
        }
        if let Some(name) = req
            .extensions()
            .get::<ClientCert>()
            .and_then(|c| self.certs.get(&c.0))
        {
            return Ok(Writer::Named(name.clone()));
        }
        if self.anonymous {
            return Ok(Writer::Anonymous);
        }
        Err(unauthorized(
            "writer_required",
            "this log takes entries only from its writers: send `Authorization: Bearer TOKEN` or a client certificate named in its writers file",
        ))
    }
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>, cert: Option<&str>) -> Request<()> {
        let mut r = Request::builder().uri("/v1/entries");
        if let Some(a) = auth {
            r = r.header(AUTHORIZATION, a);
        }
        let mut r = r.body(()).unwrap();
        if let Some(c) = cert {
            r.extensions_mut().insert(ClientCert(c.to_string()));
        }
        r
    }

    const FILE: &str = "# writers\nhr-sync token-sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\ndeployer cert-sha256:00000000000000000000000000000000000000000000000000000000000000aa\n";

    #[test]
    fn a_known_token_or_certificate_names_its_writer() {
        let w = Writers::parse(FILE, false).unwrap();
        assert_eq!(w.len(), 2);
        // sha256("secret") is the digest in FILE; the scheme's case is free.
        for auth in ["Bearer secret", "bearer secret"] {
            assert_eq!(
                w.authenticate(&request(Some(auth), None)).unwrap(),
                Writer::Named("hr-sync".into())
            );
        }
        let cert = format!("{:0>64}", "aa");
        assert_eq!(
            w.authenticate(&request(None, Some(&cert))).unwrap(),
            Writer::Named("deployer".into())
        );
    }

    #[test]
    fn unknown_or_missing_credentials_are_refused_unless_anonymous_is_allowed() {
        let w = Writers::parse(FILE, false).unwrap();
        for (auth, code) in [
            (Some("Bearer wrong"), "unknown_token"),
            (Some("Basic c2VjcmV0"), "bad_authorization"),
            (Some("Bearer "), "bad_authorization"),
            (None, "writer_required"),
        ] {
            let e = w.authenticate(&request(auth, None)).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (401, code));
        }
        let cert = format!("{:0>64}", "bb");
        assert!(w.authenticate(&request(None, Some(&cert))).is_err());
        let open = Writers::parse(FILE, true).unwrap();
        assert_eq!(
            open.authenticate(&request(None, None)).unwrap(),
            Writer::Anonymous
        );
        // A wrong token is an error even where anonymous writes are allowed.
        assert!(open
            .authenticate(&request(Some("Bearer wrong"), None))
            .is_err());
    }

    #[test]
    fn malformed_files_name_the_line() {
        for (text, want) in [
            ("a token-sha256:00", "line 1: a SHA-256 is 64 hex digits"),
            ("\nb password:x", "line 2: a credential is"),
            ("c", "line 1: want NAME"),
            ("bad/name token-sha256:", "line 1: a writer name"),
        ] {
            let e = Writers::parse(text, false).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
        let twice = format!("a cert-sha256:{0}\nb cert-sha256:{0}", "0".repeat(64));
        assert!(Writers::parse(&twice, false).unwrap_err().contains("twice"));
    }
}
