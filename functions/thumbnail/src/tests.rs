//! Handler tests over an in-memory bucket.

use super::*;
use image::{DynamicImage, ImageFormat, RgbImage};
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Mutex;

const BUCKET: &str = "chat-media-example";
const OWNER: &str = "0123456789abcdef0123456789abcdef";
const ULID: &str = "01JABCDEFGHJKMNPQRSTVWXYZ0";

/// An in-memory bucket that can be told to fail.
#[derive(Default)]
struct MemoryObjects {
    objects: Mutex<HashMap<(String, String), Vec<u8>>>,
    /// Every put: (bucket, key, bytes).
    puts: Mutex<Vec<(String, String, Vec<u8>)>>,
    gets: Mutex<Vec<String>>,
    fail_get: bool,
    fail_put: bool,
    /// The source is deleted right after it is read (a take-down during the render).
    vanish_after_get: bool,
    deletes: Mutex<Vec<String>>,
}

impl MemoryObjects {
    fn with(key: &str, bytes: Vec<u8>) -> Self {
        let store = MemoryObjects::default();
        store
            .objects
            .lock()
            .unwrap()
            .insert((BUCKET.into(), key.into()), bytes);
        store
    }
    fn puts(&self) -> Vec<(String, String, Vec<u8>)> {
        self.puts.lock().unwrap().clone()
    }
    fn gets(&self) -> usize {
        self.gets.lock().unwrap().len()
    }
}

impl Objects for MemoryObjects {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Fetched, Error> {
        self.gets.lock().unwrap().push(key.into());
        if self.fail_get {
            return Err(Error::Storage {
                op: "GetObject",
                message: "dispatch failure: connection refused".into(),
            });
        }
        let mut objects = self.objects.lock().unwrap();
        let got = objects.get(&(bucket.into(), key.into())).cloned();
        if self.vanish_after_get {
            objects.remove(&(bucket.into(), key.into()));
        }
        Ok(match got {
            None => Fetched::Missing,
            Some(b) if b.len() as u64 > max_bytes => Fetched::TooLarge {
                size: b.len() as u64,
            },
            Some(b) => Fetched::Bytes(b.clone()),
        })
    }

    async fn put_jpeg(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        if self.fail_put {
            return Err(Error::Storage {
                op: "PutObject",
                message: "AccessDenied".into(),
            });
        }
        self.puts
            .lock()
            .unwrap()
            .push((bucket.into(), key.into(), bytes.clone()));
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.into(), key.into()), bytes);
        Ok(())
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        let objects = self.objects.lock().unwrap();
        Ok(objects.contains_key(&(bucket.into(), key.into())))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), Error> {
        self.deletes.lock().unwrap().push(key.into());
        self.objects
            .lock()
            .unwrap()
            .remove(&(bucket.into(), key.into()));
        Ok(())
    }
}

fn deps(objects: MemoryObjects) -> Deps<MemoryObjects> {
    Deps {
        objects,
        config: Config::default(),
    }
}

fn upload_key(name: &str, ext: &str) -> String {
    format!("m/i/{OWNER}/{name}.{ext}")
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// An S3 notification with one record per (event key, size), keys as given (already encoded).
fn event(records: &[(&str, Option<u64>)]) -> LambdaEvent<S3Event> {
    let records: Vec<_> = records
        .iter()
        .map(|(key, size)| {
            serde_json::json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2025-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "ImageUploaded",
                    "bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
                    "object": {"key": key, "size": size, "sequencer": "01"}
                }
            })
        })
        .collect();
    let payload = serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    LambdaEvent::new(payload, lambda_runtime::Context::default())
}

fn jpeg_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(image::guess_format(bytes).unwrap(), ImageFormat::Jpeg);
    let img = image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).unwrap();
    (img.width(), img.height())
}

#[tokio::test]
async fn a_large_png_gets_a_320_px_jpeg_thumbnail_beside_it() {
    // GIVEN a 1000x500 PNG uploaded as an image
    let name = format!("{ULID}_1000x500");
    let key = upload_key(&name, "png");
    let deps = deps(MemoryObjects::with(&key, png(1000, 500)));
    // WHEN S3 reports its creation
    handler(&deps, event(&[(&key, Some(2048))])).await.unwrap();
    // THEN a 320x160 JPEG is written at t/<owner>/<name>.jpg in the same bucket
    let puts = deps.objects.puts();
    assert_eq!(puts.len(), 1);
    let (bucket, thumb_key, bytes) = &puts[0];
    assert_eq!(bucket, BUCKET);
    assert_eq!(thumb_key, &format!("t/{OWNER}/{name}.jpg"));
    assert_eq!(jpeg_size(bytes), (320, 160));
}

#[tokio::test]
async fn a_small_image_is_not_upscaled() {
    // GIVEN a 100x80 PNG
    let key = upload_key(ULID, "png");
    let deps = deps(MemoryObjects::with(&key, png(100, 80)));
    // WHEN it is handled
    let outcome = process(&deps, &event(&[(&key, None)]).payload.records[0])
        .await
        .unwrap();
    // THEN its thumbnail keeps its size, as a JPEG
    assert!(matches!(
        outcome,
        Outcome::Written {
            width: 100,
            height: 80,
            ..
        }
    ));
    assert_eq!(jpeg_size(&deps.objects.puts()[0].2), (100, 80));
}

/// A PNG whose header claims `width`x`height` RGBA pixels, followed by a few bytes of image data.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = !0u32;
        for &b in &out[start..] {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        out.extend_from_slice(&(!crc).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x60, 0x00]); // a truncated zlib stream
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test]
async fn a_png_claiming_ten_billion_pixels_is_refused_on_its_header() {
    // GIVEN a 60-byte PNG whose header claims 100000x100000 pixels (40 GB decoded)
    let key = upload_key(ULID, "png");
    let bomb = png_claiming(100_000, 100_000);
    assert!(bomb.len() < 100);
    let deps = deps(MemoryObjects::with(&key, bomb.clone()));
    // WHEN it is handled
    let outcome = process(&deps, &event(&[(&key, None)]).payload.records[0]).await;
    // THEN it is refused as too many pixels, before any decoding
    assert!(
        matches!(
            outcome,
            Err(Error::TooManyPixels {
                width: 100_000,
                height: 100_000,
                ..
            })
        ),
        "{outcome:?}"
    );
    // AND the invocation succeeds without a thumbnail (S3 must not retry it)
    handler(&deps, event(&[(&key, None)])).await.unwrap();
    assert!(deps.objects.puts().is_empty());
}

#[tokio::test]
async fn a_png_within_budget_but_with_truncated_data_gives_no_thumbnail() {
    // GIVEN a PNG whose header claims 2000x2000 pixels but whose data stops at once
    let key = upload_key(ULID, "png");
    let deps = deps(MemoryObjects::with(&key, png_claiming(2000, 2000)));
    // WHEN it is handled
    let outcome = process(&deps, &event(&[(&key, None)]).payload.records[0]).await;
    // THEN the decoder's error is reported, not retried, and no thumbnail is written
    assert!(matches!(outcome, Err(Error::Image(_))), "{outcome:?}");
    handler(&deps, event(&[(&key, None)])).await.unwrap();
    assert!(deps.objects.puts().is_empty());
}

#[tokio::test]
async fn random_bytes_give_no_thumbnail_and_no_failure() {
    // GIVEN an "image" of pseudo-random bytes, and one that starts like a JPEG
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut fake_jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    fake_jpeg.extend_from_slice(&noise);
    for bytes in [noise, fake_jpeg, Vec::new()] {
        let key = upload_key(ULID, "jpg");
        let deps = deps(MemoryObjects::with(&key, bytes));
        // WHEN it is handled
        let outcome = process(&deps, &event(&[(&key, None)]).payload.records[0]).await;
        // THEN it is an image error, the invocation succeeds and nothing is written
        assert!(matches!(outcome, Err(Error::Image(_))), "{outcome:?}");
        handler(&deps, event(&[(&key, None)])).await.unwrap();
        assert!(deps.objects.puts().is_empty());
    }
}

#[tokio::test]
async fn keys_that_are_not_sent_images_are_skipped_without_reading_them() {
    // GIVEN a thumbnail (our own output), a video, an upload (not yet sent, or overwritten
    // after its send) and a malformed key, all present
    let keys = [
        format!("t/{OWNER}/{ULID}.jpg"),
        format!("m/v/{OWNER}/{ULID}.mp4"),
        format!("u/i/{OWNER}/{ULID}.png"),
        format!("m/i/{OWNER}/not-a-ulid.png"),
    ];
    for key in &keys {
        let deps = deps(MemoryObjects::with(key, png(10, 10)));
        // WHEN S3 reports them
        let outcome = process(&deps, &event(&[(key, None)]).payload.records[0]).await;
        // THEN each is skipped: nothing read, nothing written
        assert!(matches!(outcome, Ok(Outcome::Skipped { .. })), "{key}");
        handler(&deps, event(&[(key, None)])).await.unwrap();
        assert_eq!(deps.objects.gets(), 0, "{key}");
        assert!(deps.objects.puts().is_empty(), "{key}");
    }
}

#[tokio::test]
async fn the_event_key_is_url_decoded() {
    // GIVEN an upload whose key arrives percent-encoded in the event
    let key = upload_key(ULID, "png");
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'/' => "%2F".to_string(),
            b if b.is_ascii_uppercase() => format!("%{b:02X}"),
            b => char::from(b).to_string(),
        })
        .collect();
    assert_ne!(encoded, key);
    let deps = deps(MemoryObjects::with(&key, png(40, 30)));
    // WHEN S3 reports it
    handler(&deps, event(&[(&encoded, None)])).await.unwrap();
    // THEN the decoded key is read and its thumbnail written
    assert_eq!(deps.objects.gets.lock().unwrap().as_slice(), [key]);
    assert_eq!(deps.objects.puts()[0].1, format!("t/{OWNER}/{ULID}.jpg"));
}

#[tokio::test]
async fn a_storage_failure_fails_the_invocation_so_lambda_retries() {
    // GIVEN an uploaded image, and S3 failing to read it, then to write the thumbnail
    let key = upload_key(ULID, "png");
    for (fail_get, fail_put, op) in [(true, false, "GetObject"), (false, true, "PutObject")] {
        let mut objects = MemoryObjects::with(&key, png(50, 50));
        objects.fail_get = fail_get;
        objects.fail_put = fail_put;
        let deps = deps(objects);
        // WHEN S3 reports the upload
        let result = handler(&deps, event(&[(&key, None)])).await;
        // THEN the invocation fails with a retryable storage error
        match result {
            Err(e @ Error::Storage { op: o, .. }) => {
                assert_eq!(o, op);
                assert!(e.is_retryable());
                assert_eq!(Diagnostic::from(e).error_type, "StorageError");
            }
            other => panic!("{op}: expected a storage error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn one_failing_record_does_not_stop_the_others() {
    // GIVEN two records: one whose object is gone, one good
    let gone = upload_key(ULID, "png");
    let good = upload_key("01JABCDEFGHJKMNPQRSTVWXYZ1", "png");
    let deps = deps(MemoryObjects::with(&good, png(64, 64)));
    // WHEN both arrive in one event
    handler(&deps, event(&[(&gone, None), (&good, None)]))
        .await
        .unwrap();
    // THEN the good one gets its thumbnail and the gone one is not retried
    let puts = deps.objects.puts();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].1,
        format!("t/{OWNER}/01JABCDEFGHJKMNPQRSTVWXYZ1.jpg")
    );
}

#[tokio::test]
async fn objects_over_the_byte_limit_are_not_decoded() {
    // GIVEN a limit of 1000 bytes and an image of more
    let key = upload_key(ULID, "png");
    let bytes = png(300, 300);
    assert!(bytes.len() > 1000);
    let mut deps = deps(MemoryObjects::with(&key, bytes.clone()));
    deps.config.max_image_bytes = 1000;
    // WHEN the event announces its size
    let outcome = process(
        &deps,
        &event(&[(&key, Some(bytes.len() as u64))]).payload.records[0],
    )
    .await;
    // THEN it is refused without reading it
    assert!(
        matches!(outcome, Err(Error::TooLarge { max: 1000, .. })),
        "{outcome:?}"
    );
    assert_eq!(deps.objects.gets(), 0);
    // AND when the event says nothing of its size, the read itself refuses it
    let outcome = process(&deps, &event(&[(&key, None)]).payload.records[0]).await;
    assert!(
        matches!(outcome, Err(Error::TooLarge { max: 1000, .. })),
        "{outcome:?}"
    );
    handler(&deps, event(&[(&key, None)])).await.unwrap();
    assert!(deps.objects.puts().is_empty());
}

#[test]
fn the_sample_event_parses_and_names_a_sent_image() {
    // GIVEN the sample event in events/ (also usable with `cargo lambda invoke`)
    let event: S3Event = serde_json::from_str(include_str!("../events/image-sent.json")).unwrap();
    // WHEN its key is read as the handler reads it
    let key = decode_event_key(event.records[0].s3.object.key.as_deref().unwrap()).unwrap();
    // THEN it is a sent image with a thumbnail key
    assert_eq!(
        thumbnail_key(&key).as_deref(),
        Some("t/0123456789abcdef0123456789abcdef/01JABCDEFGHJKMNPQRSTVWXYZ0_1000x500.jpg")
    );
}

#[test]
fn config_has_defaults_and_refuses_malformed_values() {
    fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }
    // GIVEN no variables
    // THEN the defaults apply
    assert_eq!(Config::from_lookup(env(&[])).unwrap(), Config::default());
    assert_eq!(Config::default().max_image_bytes, 10_485_760);
    assert_eq!(Config::default().max_pixels, 40_000_000);
    // GIVEN the template's and the local stack's variables
    let c = Config::from_lookup(env(&[
        ("MAX_IMAGE_BYTES", "2048"),
        ("THUMBNAIL_MAX_PIXELS", "1000000"),
        ("S3_FORCE_PATH_STYLE", "true"),
    ]))
    .unwrap();
    // THEN they are read
    assert_eq!(
        (c.max_image_bytes, c.max_pixels, c.force_path_style),
        (2048, 1_000_000, true)
    );
    // GIVEN malformed values
    for (var, value) in [
        ("MAX_IMAGE_BYTES", "10MB"),
        ("MAX_IMAGE_BYTES", "0"),
        ("THUMBNAIL_MAX_PIXELS", "-1"),
        ("THUMBNAIL_MAX_PIXELS", ""),
        ("S3_FORCE_PATH_STYLE", "yes"),
    ] {
        // THEN start-up fails naming the variable
        let err = Config::from_lookup(env(&[(var, value)])).unwrap_err();
        assert!(err.to_string().contains(var), "{err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn a_thumbnail_of_an_image_deleted_while_it_was_made_is_deleted_too() {
    // GIVEN an image that a take-down (or a recall) deletes while its thumbnail is rendered
    let name = format!("{ULID}_400x300");
    let key = upload_key(&name, "png");
    let store = MemoryObjects {
        vanish_after_get: true,
        ..MemoryObjects::with(&key, png(400, 300))
    };
    let deps = deps(store);
    // WHEN S3 reports its creation
    let record = &event(&[(&key, None)]).payload.records[0];
    let outcome = process(&deps, record).await.unwrap();
    // THEN the thumbnail it wrote is deleted again, and nothing of the image is left
    assert!(matches!(outcome, Outcome::Skipped { .. }), "{outcome:?}");
    let thumb = format!("t/{OWNER}/{name}.jpg");
    assert_eq!(*deps.objects.deletes.lock().unwrap(), [thumb]);
    assert!(deps.objects.objects.lock().unwrap().is_empty());
}
