//! S3's browser-based upload (POST) policy, signed with SigV4. The Rust SDK has no presigned
//! POST (aws-sdk-rust #863), which `wx.uploadFile` needs; the signing key and signature come
//! from `aws-sigv4`'s primitives, checked against AWS's published example.

use std::fmt;

/// Temporary or long-term credentials, as a POST policy signature needs them.
#[derive(Clone)]
pub struct SigningCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for SigningCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// What a POST policy is for.
#[derive(Debug, Clone)]
pub struct PostPolicyRequest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
    pub max_bytes: u64,
    pub region: &'a str,
    pub now: std::time::SystemTime,
    pub expires_in: std::time::Duration,
}

/// Builds a SigV4-signed POST policy (S3's browser-based upload) pinning the exact key,
/// Content-Type and a `content-length-range` of 1 to `max_bytes`. Returns the form fields, in
/// the order S3 wants them before the file. The Rust SDK has no presigned POST
/// (aws-sdk-rust #863); the signing key and signature come from `aws-sigv4`'s primitives.
pub fn post_policy_fields(
    req: &PostPolicyRequest<'_>,
    creds: &SigningCredentials,
) -> Vec<(String, String)> {
    use base64::Engine as _;
    let now = time::OffsetDateTime::from(req.now);
    let amz_date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let credential = format!(
        "{}/{}/{}/s3/aws4_request",
        creds.access_key_id,
        &amz_date[..8],
        req.region
    );
    let expiration = now + req.expires_in;
    let expiration = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        expiration.year(),
        expiration.month() as u8,
        expiration.day(),
        expiration.hour(),
        expiration.minute(),
        expiration.second()
    );
    let mut conditions = vec![
        serde_json::json!({"bucket": req.bucket}),
        serde_json::json!({"key": req.key}),
        serde_json::json!({"Content-Type": req.content_type}),
        serde_json::json!(["content-length-range", 1, req.max_bytes]),
        serde_json::json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}),
        serde_json::json!({"x-amz-credential": credential}),
        serde_json::json!({"x-amz-date": amz_date}),
    ];
    if let Some(token) = &creds.session_token {
        conditions.push(serde_json::json!({"x-amz-security-token": token}));
    }
    let policy = serde_json::json!({"expiration": expiration, "conditions": conditions});
    let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let signature = sign_policy(&policy_b64, &creds.secret_access_key, req.now, req.region);
    let mut fields = vec![
        ("key".to_owned(), req.key.to_owned()),
        ("Content-Type".to_owned(), req.content_type.to_owned()),
        ("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential".to_owned(), credential),
        ("x-amz-date".to_owned(), amz_date),
    ];
    if let Some(token) = &creds.session_token {
        fields.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    fields.push(("policy".to_owned(), policy_b64));
    fields.push(("x-amz-signature".to_owned(), signature));
    fields
}

/// The SigV4 signature of a base64 POST policy: HMAC-SHA256 with the date/region/s3 signing key.
pub fn sign_policy(
    policy_b64: &str,
    secret_access_key: &str,
    date: std::time::SystemTime,
    region: &str,
) -> String {
    let key = aws_sigv4::sign::v4::generate_signing_key(secret_access_key, date, region, "s3");
    aws_sigv4::sign::v4::calculate_signature(key, policy_b64.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example: "Example: Browser-Based Upload using HTTP POST (Using AWS
    /// Signature Version 4)" in the Amazon S3 API Reference. The policy text there, base64
    /// encoded, signed with the example credentials on 2015-12-29 in us-east-1.
    #[test]
    fn the_policy_signer_reproduces_aws_published_post_example() {
        const POLICY_B64: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let date = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_451_347_200); // 2015-12-29
        assert_eq!(
            sign_policy(
                POLICY_B64,
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                date,
                "us-east-1"
            ),
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
    }

    #[test]
    fn post_fields_pin_key_type_size_and_carry_the_session_token() {
        use base64::Engine as _;
        // GIVEN session credentials (as every Lambda has)
        let creds = SigningCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("TOKEN/with+chars=".into()),
        };
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let fields = post_policy_fields(
            &PostPolicyRequest {
                bucket: "b",
                key: "u/i/k.jpg",
                content_type: "image/jpeg",
                max_bytes: 1234,
                region: "us-east-1",
                now,
                expires_in: std::time::Duration::from_secs(300),
            },
            &creds,
        );
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        // THEN the policy names exactly that key, type, size range and token, and expires in 300 s
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(get("policy").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(policy["expiration"], "2023-11-14T22:18:20.000Z");
        let conds = policy["conditions"].as_array().unwrap();
        assert!(conds.contains(&serde_json::json!({"key": "u/i/k.jpg"})));
        assert!(conds.contains(&serde_json::json!({"Content-Type": "image/jpeg"})));
        assert!(conds.contains(&serde_json::json!(["content-length-range", 1, 1234])));
        assert!(conds.contains(&serde_json::json!({"x-amz-security-token": "TOKEN/with+chars="})));
        assert_eq!(
            get("x-amz-security-token").as_deref(),
            Some("TOKEN/with+chars=")
        );
        assert_eq!(
            get("x-amz-credential").as_deref(),
            Some("ASIAEXAMPLE/20231114/us-east-1/s3/aws4_request")
        );
        assert_eq!(get("x-amz-date").as_deref(), Some("20231114T221320Z"));
        // AND the signature is that of the policy it carries
        assert_eq!(
            get("x-amz-signature").unwrap(),
            sign_policy(&get("policy").unwrap(), "secret", now, "us-east-1")
        );
        assert_eq!(fields.last().unwrap().0, "x-amz-signature");
    }
}
