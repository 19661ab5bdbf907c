//! ThumbnailFunction: a 320 px JPEG thumbnail beside every uploaded image.
//!
//! S3 invokes it (asynchronously) for every object created under `m/i/` in the media bucket: the
//! copy a send makes, once, of an uploaded image. For a sent image `m/i/<owner>/<name>.<ext>` it
//! writes `t/<owner>/<name>.jpg` (from what was sent, so bytes uploaded to the ticket's key after
//! the send change nothing a message shows); any other
//! key, its own output included, is skipped. An image that cannot or may not be decoded
//! (corrupt, unsupported, too many bytes or pixels) gets no thumbnail and the invocation
//! succeeds, since a retry would fail the same way; a storage failure fails the invocation so
//! that Lambda retries it.
//!
//! Deliberately independent of `chat-shared` (it carries the `image` crate and nothing of the
//! chat); the key rule comes from the dependency-free `chat-media-key`, which the chat uses too.

pub mod key;
pub mod render;
pub mod store;

pub use key::{decode_event_key, thumbnail_key};
pub use render::{render, Thumbnail, THUMBNAIL_MAX_SIDE};
pub use store::{Fetched, Objects, S3Objects};

use aws_lambda_events::s3::{S3Event, S3EventRecord};
use lambda_runtime::{Diagnostic, LambdaEvent};

/// Everything that can go wrong. [`Error::is_retryable`] decides whether the invocation fails.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration malformed at cold start.
    #[error("configuration: {var} {reason}")]
    Config { var: &'static str, reason: String },
    /// An S3 request failed (network, throttling, permissions).
    #[error("storage: {op} failed: {message}")]
    Storage { op: &'static str, message: String },
    /// The object was deleted before it could be read.
    #[error("the object no longer exists")]
    Gone,
    /// The object has more bytes than `MAX_IMAGE_BYTES`.
    #[error("the object has {size} bytes, more than {max}")]
    TooLarge { size: u64, max: u64 },
    /// The image header announces more pixels than `THUMBNAIL_MAX_PIXELS`.
    #[error("the image is {width}x{height} pixels, more than {max}")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Corrupt, unsupported, or over the decoder's allocation limit.
    #[error("the image cannot be decoded: {0}")]
    Image(#[from] image::ImageError),
}

impl Error {
    /// Whether trying again could succeed: only storage failures. Everything else is a property
    /// of the object and would fail the same way on each of S3's retries.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Storage { .. })
    }
}

impl From<Error> for Diagnostic {
    fn from(e: Error) -> Self {
        let error_type = match e {
            Error::Config { .. } => "ConfigError",
            Error::Storage { .. } => "StorageError",
            _ => "ImageError",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// Typed configuration, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `MAX_IMAGE_BYTES`: largest object read (default 10 MiB, the upload limit).
    pub max_image_bytes: u64,
    /// `THUMBNAIL_MAX_PIXELS`: largest width × height decoded (default 40 million).
    pub max_pixels: u64,
    /// `S3_FORCE_PATH_STYLE`: `true` for local S3 servers.
    pub force_path_style: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_image_bytes: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
            force_path_style: false,
        }
    }
}

impl Config {
    /// The variables read, each with its default as text and its meaning (for
    /// docs/configuration.md and the test that holds the defaults against template.yaml).
    pub fn variables() -> [(&'static str, String, &'static str); 3] {
        let d = Config::default();
        [
            (
                "MAX_IMAGE_BYTES",
                d.max_image_bytes.to_string(),
                "Largest object read, in bytes (the upload limit).",
            ),
            (
                "THUMBNAIL_MAX_PIXELS",
                d.max_pixels.to_string(),
                "Largest width × height decoded; bigger images get no thumbnail.",
            ),
            (
                "S3_FORCE_PATH_STYLE",
                d.force_path_style.to_string(),
                "Path-style S3 URLs, for a local S3 on 127.0.0.1.",
            ),
        ]
    }

    /// Reads the process environment; a malformed value is an error naming the variable.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let number = |var: &'static str, default: u64, max: u64| match get(var) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(Error::Config {
                    var,
                    reason: format!("must be a whole number from 1 to {max}"),
                }),
            },
        };
        let defaults = Config::default();
        let force_path_style = match get("S3_FORCE_PATH_STYLE").as_deref().map(str::trim) {
            None | Some("" | "false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(Error::Config {
                    var: "S3_FORCE_PATH_STYLE",
                    reason: "must be true or false".into(),
                })
            }
        };
        Ok(Config {
            max_image_bytes: number("MAX_IMAGE_BYTES", defaults.max_image_bytes, 100 << 20)?,
            max_pixels: number("THUMBNAIL_MAX_PIXELS", defaults.max_pixels, 100_000_000)?,
            force_path_style,
        })
    }
}

/// What the handler needs, built once in `main`.
pub struct Deps<O> {
    pub objects: O,
    pub config: Config,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A thumbnail was written.
    Written {
        key: String,
        thumbnail: String,
        width: u32,
        height: u32,
        bytes: usize,
    },
    /// Not an uploaded image (or not a creation): nothing to do.
    Skipped { reason: &'static str },
}

/// The Lambda handler: every record in turn. Fails (so that Lambda retries the event) only when
/// storage failed for some record; a retry rewrites the thumbnails already written, which is
/// harmless.
pub async fn handler<O: Objects>(deps: &Deps<O>, event: LambdaEvent<S3Event>) -> Result<(), Error> {
    let mut failure = None;
    for record in &event.payload.records {
        let raw_key = record.s3.object.key.as_deref().unwrap_or_default();
        match process(deps, record).await {
            Ok(Outcome::Written {
                key,
                thumbnail,
                width,
                height,
                bytes,
            }) => tracing::info!(%key, %thumbnail, width, height, bytes, "thumbnail written"),
            Ok(Outcome::Skipped { reason }) => {
                tracing::info!(key = %shown(raw_key), reason, "skipped")
            }
            Err(e) if e.is_retryable() => {
                tracing::error!(key = %shown(raw_key), error = %e, "storage failed; will be retried");
                failure.get_or_insert(e);
            }
            Err(e) => tracing::warn!(key = %shown(raw_key), error = %e, "no thumbnail"),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// One record: read the upload, render, write the thumbnail, and check that the image is still
/// there (one `HeadObject`).
pub async fn process<O: Objects>(deps: &Deps<O>, record: &S3EventRecord) -> Result<Outcome, Error> {
    let skip = |reason| Ok(Outcome::Skipped { reason });
    if record
        .event_name
        .as_deref()
        .is_some_and(|n| !n.contains("ObjectCreated"))
    {
        return skip("not an object creation");
    }
    let Some(bucket) = record.s3.bucket.name.as_deref().filter(|b| !b.is_empty()) else {
        return skip("no bucket in the event");
    };
    let Some(key) = record.s3.object.key.as_deref().and_then(decode_event_key) else {
        return skip("no decodable key in the event");
    };
    let Some(thumbnail) = thumbnail_key(&key) else {
        return skip("not a sent image key");
    };
    let max = deps.config.max_image_bytes;
    if let Some(size) = record.s3.object.size.and_then(|n| u64::try_from(n).ok()) {
        if size > max {
            return Err(Error::TooLarge { size, max });
        }
    }
    let bytes = match deps.objects.get(bucket, &key, max).await? {
        Fetched::Bytes(bytes) => bytes,
        Fetched::TooLarge { size } => return Err(Error::TooLarge { size, max }),
        Fetched::Missing => return Err(Error::Gone),
    };
    // CPU work inline: the runtime has one thread and one event at a time, and no other thread
    // means no second malloc arena or stack under the memory limit.
    let thumb = render(&bytes, deps.config.max_pixels)?;
    drop(bytes);
    let size = thumb.jpeg.len();
    deps.objects
        .put_jpeg(bucket, &thumbnail, thumb.jpeg)
        .await?;
    // An image taken down (content security) or recalled while this ran has had its objects
    // deleted, its thumbnail among them before it existed: the one just written must go too,
    // or it would outlive the image.
    if !deps.objects.exists(bucket, &key).await? {
        deps.objects.delete(bucket, &thumbnail).await?;
        return skip("the image was deleted while its thumbnail was made");
    }
    Ok(Outcome::Written {
        key,
        thumbnail,
        width: thumb.width,
        height: thumb.height,
        bytes: size,
    })
}

/// A key as logged: at most 200 bytes of it (keys are ours and carry no personal data, but an
/// event could carry anything).
fn shown(key: &str) -> &str {
    let mut end = key.len().min(200);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

#[cfg(test)]
mod tests;
