//! The S3 adapter against a real local S3 (s3s-fs 0.14.1) that enforces SigV4 and POST
//! policies: what a ticket lets a client upload, and what it does not.

mod common;

use common::s3_media;
use local_stack::s3_local::S3Local;
use shared::domain::media::UploadTicket;
use shared::ports::{MediaObjects, MediaSigner};
use std::time::Duration;

const BUCKET: &str = "media";

/// A private s3s-fs with one bucket, removed with the returned guard.
fn local_s3() -> (S3Local, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let s3 = S3Local::start(&dir.0, &[BUCKET.to_string()]).expect("s3s-fs starts");
    (s3, dir)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("chat-s3-test-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A response header's value, empty when absent.
fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// PUTs `body` to the ticket's URL with its signed headers, `content_type` replacing the signed
/// type when given. Returns the status.
async fn put(t: &UploadTicket, body: Vec<u8>, content_type: Option<&str>) -> u16 {
    let mut req = http().put(&t.put_url);
    for (k, v) in &t.put_headers {
        // The body sets Content-Length itself; a different body length must fail the signature.
        if k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let v = match (k.eq_ignore_ascii_case("content-type"), content_type) {
            (true, Some(ct)) => ct,
            _ => v,
        };
        req = req.header(k, v);
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

/// POSTs the ticket's form with `change` applied to its fields, then the file. Returns the
/// status.
async fn post(t: &UploadTicket, body: Vec<u8>, change: impl Fn(&str, &str) -> String) -> u16 {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in &t.post_fields {
        form = form.text(k.clone(), change(k, v));
    }
    let ct = t
        .post_fields
        .iter()
        .find(|(k, _)| k == "Content-Type")
        .map(|(_, v)| v.clone())
        .unwrap();
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(body)
            .file_name("photo")
            .mime_str(&ct)
            .unwrap(),
    );
    http()
        .post(&t.post_url)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn same(_: &str, v: &str) -> String {
    v.to_owned()
}

#[tokio::test]
async fn a_put_ticket_uploads_only_the_signed_type_and_size() {
    // GIVEN a ticket for 100 bytes of image/jpeg
    let (s3, _dir) = local_s3();
    let media = s3_media(&s3.endpoint(), BUCKET);
    let key = "u/i/put/one.jpg";
    let t = media
        .upload_ticket(key, "image/jpeg", 100, Duration::from_secs(300))
        .await
        .unwrap();
    assert!(t
        .put_headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-length") && v == "100"));
    // WHEN a client PUTs another size, another type, or with a tampered signature
    // THEN S3 refuses each, and nothing is stored
    assert!((400..500).contains(&put(&t, vec![7; 101], None).await));
    assert!((400..500).contains(&put(&t, vec![7; 100], Some("text/html")).await));
    let mut forged = t.clone();
    forged.put_url = forged
        .put_url
        .replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert!((400..500).contains(&put(&forged, vec![7; 100], None).await));
    assert_eq!(media.head(key).await.unwrap(), None);
    // AND the exact upload succeeds, is seen by HeadObject, and downloads unchanged
    assert_eq!(put(&t, vec![7; 100], None).await, 200);
    let info = media.head(key).await.unwrap().unwrap();
    assert_eq!((info.content_type.as_str(), info.size), ("image/jpeg", 100));
    let url = media
        .download_urls(&[key.to_string()], Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let got = http().get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), vec![7; 100]);
    // AND an unsigned read is refused: the bucket is private
    let unsigned = format!("{}/{BUCKET}/{key}", s3.endpoint());
    assert_eq!(http().get(&unsigned).send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn a_post_ticket_enforces_key_type_and_length_range() {
    // GIVEN a POST ticket for up to 100 bytes of image/png
    let (s3, _dir) = local_s3();
    let media = s3_media(&s3.endpoint(), BUCKET);
    let key = "u/i/post/one.png";
    let t = media
        .upload_ticket(key, "image/png", 100, Duration::from_secs(300))
        .await
        .unwrap();
    // WHEN the file is larger, the type or key is changed, or the signature is forged
    // THEN S3 refuses each
    assert!((400..500).contains(&post(&t, vec![1; 101], same).await));
    let retyped = |k: &str, v: &str| {
        if k == "Content-Type" {
            "text/html".into()
        } else {
            v.into()
        }
    };
    assert!((400..500).contains(&post(&t, vec![1; 50], retyped).await));
    let rekeyed = |k: &str, v: &str| {
        if k == "key" {
            "u/i/post/other.png".into()
        } else {
            v.into()
        }
    };
    assert!((400..500).contains(&post(&t, vec![1; 50], rekeyed).await));
    let forged = |k: &str, v: &str| {
        if k == "x-amz-signature" {
            // another first hex digit (always: "0" alone would equal 1 signature in 16)
            let other = if v.starts_with('0') { '1' } else { '0' };
            format!("{other}{}", &v[1..])
        } else {
            v.into()
        }
    };
    assert!((400..500).contains(&post(&t, vec![1; 50], forged).await));
    assert_eq!(media.head(key).await.unwrap(), None);
    assert_eq!(media.head("u/i/post/other.png").await.unwrap(), None);
    // AND a file within the range is stored with the signed type
    let status = post(&t, vec![1; 60], same).await;
    assert!((200..300).contains(&status), "{status}");
    let info = media.head(key).await.unwrap().unwrap();
    assert_eq!((info.content_type.as_str(), info.size), ("image/png", 60));
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    // GIVEN tickets valid for one second, used after two
    let (s3, _dir) = local_s3();
    let media = s3_media(&s3.endpoint(), BUCKET);
    let t = media
        .upload_ticket("u/i/late/one.jpg", "image/jpeg", 10, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // THEN both the PUT and the POST are refused
    assert!((400..500).contains(&put(&t, vec![1; 10], None).await));
    assert!((400..500).contains(&post(&t, vec![1; 10], same).await));
    assert_eq!(media.head("u/i/late/one.jpg").await.unwrap(), None);
}

#[tokio::test]
async fn head_reports_missing_objects_and_copy_keeps_type_and_bytes() {
    let (s3, _dir) = local_s3();
    let media = s3_media(&s3.endpoint(), BUCKET);
    assert_eq!(media.head("u/v/none/x.mp4").await.unwrap(), None);
    let t = media
        .upload_ticket("u/v/c/x.mp4", "video/mp4", 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(put(&t, b"12345".to_vec(), None).await, 200);
    media.copy("u/v/c/x.mp4", "m/v/c/x.mp4").await.unwrap();
    let info = media.head("m/v/c/x.mp4").await.unwrap().unwrap();
    assert_eq!((info.content_type.as_str(), info.size), ("video/mp4", 5));
    let url = media
        .download_urls(&["m/v/c/x.mp4".to_string()], Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let body = http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"12345");
}

#[tokio::test]
async fn a_download_serves_the_keys_type_whatever_the_object_was_stored_as() {
    // GIVEN an object under an image key stored as HTML (by anyone who could write the bucket)
    let (s3, _dir) = local_s3();
    let media = s3_media(&s3.endpoint(), BUCKET);
    local_stack::clients::s3(&s3.endpoint())
        .put_object()
        .bucket(BUCKET)
        .key("m/i/o/page.jpg")
        .content_type("text/html")
        .body(b"<script>alert(1)</script>".to_vec().into())
        .send()
        .await
        .unwrap();
    // WHEN its download URL is fetched
    let url = media
        .download_urls(&["m/i/o/page.jpg".to_string()], Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let got = http().get(&url).send().await.unwrap();
    // THEN it comes as an image, inline under its own name: a browser will not run it
    assert_eq!(got.status(), 200);
    assert_eq!(header(&got, "content-type"), "image/jpeg");
    assert_eq!(
        header(&got, "content-disposition"),
        "inline; filename=\"page.jpg\""
    );
}
