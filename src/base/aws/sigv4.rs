//! AWS Signature Version 4 for one request with its signature in the `Authorization` header: the
//! canonical request, the string to sign, the signing key derived from the secret access key,
//! and the headers that carry the result. Enough to call an AWS JSON API without the AWS SDK.
//!
//! Every step is a pure function of its inputs, time included, so the published test vectors
//! (AWS's Signature Version 4 test suite, 20150830T123600Z in us-east-1) pin each one, and a test
//! server can re-compute the signature of a request it received.
//!
//! Not covered, because the broker never needs them: URI-encoding of paths and query strings
//! (callers pass them in canonical form), presigned URLs, chunked payloads, SigV4A.

use ring::{
    digest::{SHA256, digest},
    hmac,
};

use crate::base::{clock, secret::Secret};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The SHA-256 of an empty payload, which GET requests sign.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An access key with its secret, and the session token that temporary credentials (a Lambda
/// execution role's) come with. `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even the key id stays out: it names the role's session in CloudTrail, and nobody
        // reading a log line needs it.
        f.debug_struct("Credentials")
            .field("access_key_id", &"[redacted]")
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

/// The parts of an HTTP request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The `Host` header exactly as sent: with `:port` when the port is not the scheme's default.
    pub host: &'a str,
    /// Already URI-encoded (`/` for the AWS JSON APIs).
    pub path: &'a str,
    /// Already canonical: parameters sorted and URI-encoded; empty for none.
    pub query: &'a str,
    /// Headers to sign besides `host`, `x-amz-date` and `x-amz-security-token`, which [`sign`]
    /// adds. Names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// What [`sign`] adds to the request: the values of `X-Amz-Date`, `X-Amz-Security-Token` (with
/// temporary credentials) and `Authorization`. `Debug` hides the token and the signature.
#[derive(Debug, Clone)]
pub struct Signed {
    pub amz_date: String,
    pub security_token: Option<Secret>,
    pub authorization: Secret,
}

impl Signed {
    /// The headers to add, as (name, value) pairs.
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        let mut headers = vec![("x-amz-date", self.amz_date.as_str())];
        if let Some(token) = &self.security_token {
            headers.push(("x-amz-security-token", token.expose()));
        }
        headers.push(("authorization", self.authorization.expose()));
        headers
    }
}

/// Signs `request` for `service` in `region` at `now` (Unix seconds). The session token, when
/// there is one, is signed as well as sent, as AWS's `post-sts-header-before` case does.
pub fn sign(request: &Request<'_>, credentials: &Credentials, region: &str, service: &str, now: i64) -> Signed {
    let amz_date = amz_date(now);
    let token = credentials.session_token.as_ref().map(Secret::expose);
    let mut headers: Vec<(&str, &str)> = request.headers.to_vec();
    headers.push(("host", request.host));
    headers.push(("x-amz-date", &amz_date));
    if let Some(token) = token {
        headers.push(("x-amz-security-token", token));
    }
    let canonical = canonical_request(request.method, request.path, request.query, &headers, request.body);
    let date = &amz_date[..8];
    let scope = credential_scope(date, region, service);
    let to_sign = string_to_sign(&amz_date, &scope, &canonical.text);
    let key = signing_key(credentials.secret_access_key.expose(), date, region, service);
    let signature = signature(&key, &to_sign);
    Signed {
        authorization: Secret::new(authorization(
            &credentials.access_key_id,
            &scope,
            &canonical.signed_headers,
            &signature,
        )),
        security_token: credentials.session_token.clone(),
        amz_date,
    }
}

/// A canonical request (task 1) and the `SignedHeaders` list that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    pub text: String,
    pub signed_headers: String,
}

/// Task 1: every header in `headers` is signed. Names are lower-cased and sorted, values trimmed
/// with inner runs of spaces collapsed, and a name given more than once keeps its values in
/// order, joined by commas.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> CanonicalRequest {
    let mut normalized: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), trim_all(value)))
        .collect();
    // Stable: repeated names keep the order their values were given in.
    normalized.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(String, String)> = Vec::with_capacity(normalized.len());
    for (name, value) in normalized {
        match merged.last_mut() {
            Some((last, values)) if *last == name => {
                values.push(',');
                values.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let canonical_headers: String = merged.iter().map(|(name, value)| format!("{name}:{value}\n")).collect();
    let signed_headers = merged
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let text = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        sha256_hex(body)
    );
    CanonicalRequest { text, signed_headers }
}

/// `date/region/service/aws4_request`, `date` as `YYYYMMDD`.
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// Task 2.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Task 3, first half: `kSigning`, the chain of four HMAC-SHA256 from `"AWS4" + secret` through
/// the date, region, service and `aws4_request`. Valid for one day, region and service.
pub fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut key = hmac_sha256(format!("AWS4{secret_access_key}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    key
}

/// Task 3, second half: the signature, lower-case hex.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex(&hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

/// Task 4: the `Authorization` header's value.
pub fn authorization(access_key_id: &str, scope: &str, signed_headers: &str, signature: &str) -> String {
    format!("{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}")
}

/// Unix seconds as the ISO 8601 basic format SigV4 uses: `20150830T123600Z`.
pub fn amz_date(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let second_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = clock::civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest(&SHA256, bytes).as_ref())
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Trims a header value and collapses each run of spaces inside it to one.
fn trim_all(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    //! Expected values are AWS's published ones: the Signature Version 4 test suite (credentials
    //! AKIDEXAMPLE, 20150830T123600Z, us-east-1, service `service`, host example.amazonaws.com),
    //! the IAM `ListUsers` example of "Create a signed AWS API request", and the signing-key
    //! example of "Examples of how to derive a signing key".

    use super::*;

    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2015-08-30T12:36:00Z.
    const SUITE_TIME: i64 = 1_440_938_160;
    const SUITE_HOST: &str = "example.amazonaws.com";
    const SUITE_SCOPE: &str = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    /// The test suite's example session token.
    const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    fn credentials(session_token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: KEY_ID.to_owned(),
            secret_access_key: Secret::new(SECRET),
            session_token: session_token.map(Secret::new),
        }
    }

    fn suite_request<'a>(method: &'a str, headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Request<'a> {
        Request {
            method,
            host: SUITE_HOST,
            path: "/",
            query: "",
            headers,
            body,
        }
    }

    fn suite_authorization(signed_headers: &str, signature: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={SUITE_SCOPE}, SignedHeaders={signed_headers}, Signature={signature}")
    }

    #[test]
    fn signing_key_matches_the_documented_derivation_example() {
        let key = signing_key(SECRET, "20120215", "us-east-1", "iam");
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn amz_date_formats_unix_seconds_in_utc() {
        assert_eq!(amz_date(SUITE_TIME), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
        assert_eq!(amz_date(4_102_444_800), "21000101T000000Z");
        assert_eq!(amz_date(-1), "19691231T235959Z");
    }

    #[test]
    fn get_vanilla_matches_the_test_suite() {
        let signed = sign(
            &suite_request("GET", &[], b""),
            &credentials(None),
            "us-east-1",
            "service",
            SUITE_TIME,
        );
        assert_eq!(signed.amz_date, "20150830T123600Z");
        assert!(signed.security_token.is_none());
        assert_eq!(
            signed.authorization.expose(),
            suite_authorization(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn post_vanilla_matches_the_test_suite() {
        let signed = sign(
            &suite_request("POST", &[], b""),
            &credentials(None),
            "us-east-1",
            "service",
            SUITE_TIME,
        );
        assert_eq!(
            signed.authorization.expose(),
            suite_authorization(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded_matches_the_test_suite_at_every_step() {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let request = suite_request("POST", &headers, b"Param1=value1");
        let canonical = canonical_request(
            "POST",
            "/",
            "",
            &[headers[0], ("Host", SUITE_HOST), ("X-Amz-Date", "20150830T123600Z")],
            request.body,
        );
        assert_eq!(
            canonical.text,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n\
             x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n\
             9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        let to_sign = string_to_sign(
            "20150830T123600Z",
            &credential_scope("20150830", "us-east-1", "service"),
            &canonical.text,
        );
        assert_eq!(
            to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        let signed = sign(&request, &credentials(None), "us-east-1", "service", SUITE_TIME);
        assert_eq!(
            signed.authorization.expose(),
            suite_authorization(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn post_header_key_sort_lowercases_sorts_and_trims_headers() {
        let headers = [("My-Header1", "  value1  ")];
        let signed = sign(
            &suite_request("POST", &headers, b""),
            &credentials(None),
            "us-east-1",
            "service",
            SUITE_TIME,
        );
        assert_eq!(
            signed.authorization.expose(),
            suite_authorization(
                "host;my-header1;x-amz-date",
                "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"
            )
        );
    }

    #[test]
    fn get_header_value_trim_collapses_inner_spaces() {
        let headers = [("My-Header1", " value1"), ("My-Header2", "\"a   b   c\"")];
        let signed = sign(
            &suite_request("GET", &headers, b""),
            &credentials(None),
            "us-east-1",
            "service",
            SUITE_TIME,
        );
        assert_eq!(
            signed.authorization.expose(),
            suite_authorization(
                "host;my-header1;my-header2;x-amz-date",
                "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
            )
        );
    }

    #[test]
    fn post_sts_header_before_signs_the_session_token() {
        let signed = sign(
            &suite_request("POST", &[], b""),
            &credentials(Some(SUITE_TOKEN)),
            "us-east-1",
            "service",
            SUITE_TIME,
        );
        assert_eq!(
            signed.authorization.expose(),
            suite_authorization(
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
        assert_eq!(
            signed.headers(),
            vec![
                ("x-amz-date", "20150830T123600Z"),
                ("x-amz-security-token", SUITE_TOKEN),
                ("authorization", signed.authorization.expose()),
            ]
        );
    }

    #[test]
    fn iam_list_users_matches_the_documented_example() {
        let headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")];
        let request = Request {
            method: "GET",
            host: "iam.amazonaws.com",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
        };
        let signed = sign(&request, &credentials(None), "us-east-1", "iam", SUITE_TIME);
        assert_eq!(
            signed.authorization.expose(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn repeated_header_names_are_joined_in_order() {
        let canonical = canonical_request(
            "GET",
            "/",
            "",
            &[("My-Header1", "value2"), ("host", "h"), ("my-header1", "value1")],
            b"",
        );
        assert_eq!(canonical.signed_headers, "host;my-header1");
        assert!(canonical.text.contains("\nmy-header1:value2,value1\n"));
        assert!(canonical.text.ends_with(EMPTY_PAYLOAD_SHA256));
    }

    #[test]
    fn debug_output_shows_no_credential_or_signature() {
        let signed = sign(
            &suite_request("POST", &[], b""),
            &credentials(Some(SUITE_TOKEN)),
            "us-east-1",
            "service",
            SUITE_TIME,
        );
        let printed = format!("{:?} {:?}", credentials(Some(SUITE_TOKEN)), signed);
        for value in [KEY_ID, SECRET, &SUITE_TOKEN[..20], "85d96828115b5dc0"] {
            assert!(!printed.contains(value), "{value} in {printed}");
        }
    }
}
