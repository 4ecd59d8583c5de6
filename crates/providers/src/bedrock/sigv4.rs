//! AWS Signature Version 4 for one HTTP request, through AWS's own `aws-sigv4` crate.
//!
//! `Signer::sign` is pure: the request, the credentials and the time go in, the headers to add
//! come out. The Bedrock adapter signs every request with it, and the tests check it against
//! AWS's published SigV4 test suite, so the adapter and the test vectors share one code path.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;

use super::credentials::Credentials;

/// How requests to one service in one region are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub region: String,
    /// The signing name: `bedrock` for Bedrock's runtime API.
    pub service: String,
    /// Adds and signs `x-amz-content-sha256` (S3 needs it; Bedrock does not). The body is
    /// covered by the signature either way: its hash is part of the canonical request.
    pub content_sha256_header: bool,
}

/// One request as it will be sent.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The full URL, already percent-encoded exactly as it goes on the wire.
    pub url: &'a str,
    /// The headers that are sent and signed, `host` included. Not `authorization`, `x-amz-date`,
    /// `x-amz-security-token` or `x-amz-content-sha256`: signing adds those.
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact bytes of the body.
    pub body: &'a [u8],
}

/// A header that signing adds. `sensitive` marks the session token, which must stay out of
/// `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeader {
    pub name: &'static str,
    pub value: String,
    pub sensitive: bool,
}

impl std::fmt::Debug for SignedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value: &dyn std::fmt::Debug = if self.sensitive { &"[redacted]" } else { &self.value };
        f.debug_struct("SignedHeader").field("name", &self.name).field("value", value).finish()
    }
}

/// Why a request could not be signed. Never contains the credentials or the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request could not be signed: {0}")]
pub struct SignError(&'static str);

impl Signer {
    /// A signer for Bedrock (`bedrock` signing name, no `x-amz-content-sha256`).
    pub fn bedrock(region: impl Into<String>) -> Self {
        Self { region: region.into(), service: "bedrock".into(), content_sha256_header: false }
    }

    /// The headers to add to `request`: `x-amz-date`, `authorization`, and
    /// `x-amz-security-token` for temporary credentials (`x-amz-content-sha256` when asked for).
    ///
    /// Settings are AWS's defaults for every service but S3: each path segment is encoded a
    /// second time in the canonical request (so `%3A` is signed as `%253A`), and the path is
    /// normalised.
    pub fn sign(
        &self,
        request: &Request<'_>,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<Vec<SignedHeader>, SignError> {
        let identity = credentials.to_aws().into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        if self.content_sha256_header {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|_| SignError("the signing parameters are incomplete"))?
            .into();
        let signable = SignableRequest::new(
            request.method,
            request.url,
            request.headers.iter().copied(),
            SignableBody::Bytes(request.body),
        )
        .map_err(|_| SignError("the URL cannot be parsed"))?;
        let (instructions, _signature) =
            sign(signable, &params).map_err(|_| SignError("a header name or value cannot be signed"))?.into_parts();
        let (headers, _query) = instructions.into_parts();
        Ok(headers
            .into_iter()
            .map(|h| SignedHeader { name: h.name(), value: h.value().to_string(), sensitive: h.sensitive() })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2015-08-30T12:36:00Z, the time of AWS's SigV4 test suite.
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    #[test]
    fn get_vanilla_from_the_aws_suite() {
        let credentials = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None);
        let signer = Signer { region: "us-east-1".into(), service: "service".into(), content_sha256_header: false };
        let request = Request {
            method: "GET",
            url: "https://example.amazonaws.com/",
            headers: &[("host", "example.amazonaws.com")],
            body: b"",
        };
        let headers = signer.sign(&request, &credentials, suite_time()).unwrap();
        let authorization = headers.iter().find(|h| h.name == "authorization").unwrap();
        assert_eq!(
            authorization.value,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        let date = headers.iter().find(|h| h.name == "x-amz-date").unwrap();
        assert_eq!(date.value, "20150830T123600Z");
    }

    #[test]
    fn the_session_token_is_signed_and_redacted_in_debug() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some("TOKEN-DO-NOT-LEAK".into()));
        let request = Request {
            method: "POST",
            url: "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
            headers: &[("host", "bedrock-runtime.us-east-1.amazonaws.com")],
            body: b"{}",
        };
        let headers = Signer::bedrock("us-east-1").sign(&request, &credentials, suite_time()).unwrap();
        let token = headers.iter().find(|h| h.name == "x-amz-security-token").unwrap();
        assert!(token.sensitive);
        assert_eq!(token.value, "TOKEN-DO-NOT-LEAK");
        assert!(!format!("{headers:?}").contains("DO-NOT-LEAK"));
        let authorization = headers.iter().find(|h| h.name == "authorization").unwrap();
        assert!(authorization.value.contains("/us-east-1/bedrock/aws4_request"));
        assert!(authorization.value.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"));
    }

    #[test]
    fn an_unparseable_url_is_an_error_without_the_url() {
        let credentials = Credentials::new("a", "b", None);
        let request = Request { method: "GET", url: "http://exa mple/secret-path", headers: &[], body: b"" };
        let error = Signer::bedrock("us-east-1").sign(&request, &credentials, suite_time()).unwrap_err();
        assert!(!error.to_string().contains("secret-path"));
    }
}
