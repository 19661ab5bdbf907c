//! Image bytes in, JPEG thumbnail out, with bounded work: the header is read first and an image
//! over the pixel budget is refused before a single pixel is decoded (decompression bombs).
//!
//! Peak memory is one decoded image (at most `max_pixels` × 4 bytes, which is also the
//! decoder's allocation limit) plus the encoded input and the small thumbnail: the resize reads
//! the decoded image in place and writes only the thumbnail, and no full-size copy is made.

use crate::Error;
use image::codecs::jpeg::JpegEncoder;
use image::error::{LimitError, LimitErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};
use std::io::Cursor;

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_MAX_SIDE: u32 = 320;
/// JPEG quality of a thumbnail.
pub const JPEG_QUALITY: u8 = 80;
/// Bytes a decoded pixel may take within the budget (RGBA8).
pub const BYTES_PER_PIXEL: u64 = 4;

/// A rendered thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// The JPEG file.
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Dimensions of the source image, as its header gives them.
    pub source_width: u32,
    pub source_height: u32,
}

/// Renders the thumbnail of an encoded image (JPEG, PNG, GIF's first frame, WebP).
///
/// Refuses with [`Error::TooManyPixels`] when the header announces more than `max_pixels`, and
/// with [`Error::Image`] when the image is corrupt, of an unsupported format, or would make the
/// decoder allocate more than `max_pixels` × [`BYTES_PER_PIXEL`] bytes. Never upscales: an image
/// whose longest side is at most [`THUMBNAIL_MAX_SIDE`] is re-encoded at its own size. Applies
/// the EXIF orientation, and flattens transparency onto white.
pub fn render(bytes: &[u8], max_pixels: u64) -> Result<Thumbnail, Error> {
    let mut limits = Limits::default();
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_pixels.saturating_mul(BYTES_PER_PIXEL));

    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(ImageError::IoError)?;
    reader.limits(limits.clone());
    // Reads the header only.
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(
            ImageError::Limits(LimitError::from_kind(LimitErrorKind::DimensionError)).into(),
        );
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(Error::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // What `ImageReader::decode` does: the output buffer counts against the allocation limit,
    // and the decoder gets what is left for its own buffers.
    limits.reserve(decoder.total_bytes())?;
    decoder.set_limits(limits)?;
    let full = DynamicImage::from_decoder(decoder)?;

    let (tw, th) = fit(width, height, THUMBNAIL_MAX_SIDE);
    let mut small = if (tw, th) == (width, height) {
        full
    } else {
        // Box sampling: every source pixel is read once, only the thumbnail is allocated.
        full.thumbnail_exact(tw, th)
    };
    small.apply_orientation(orientation);
    let rgb = flatten_on_white(small);

    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY).encode_image(&rgb)?;
    Ok(Thumbnail {
        jpeg,
        width: rgb.width(),
        height: rgb.height(),
        source_width: width,
        source_height: height,
    })
}

/// The size that fits `max_side` keeping the aspect ratio; never larger than the source.
fn fit(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |d: u32| -> u32 {
        let scaled =
            (u64::from(d) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest);
        // At most max_side, since d <= longest.
        (scaled as u32).max(1)
    };
    (scale(width), scale(height))
}

/// RGB8, with any transparency composited onto white (JPEG has no alpha, and transparent
/// pixels would otherwise show whatever colour they happen to carry, often black).
fn flatten_on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(px[3]);
        for c in 0..3 {
            out[c] = ((u16::from(px[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba, RgbaImage};

    fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn decoded_jpeg(bytes: &[u8]) -> DynamicImage {
        assert_eq!(image::guess_format(bytes).unwrap(), ImageFormat::Jpeg);
        image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).unwrap()
    }

    #[test]
    fn sizes_fit_the_longest_side_and_never_grow() {
        // GIVEN source sizes of every shape
        // WHEN they are fitted to 320
        // THEN the longest side is 320, the ratio is kept, and small ones are unchanged
        assert_eq!(fit(1000, 500, 320), (320, 160));
        assert_eq!(fit(500, 1000, 320), (160, 320));
        assert_eq!(fit(4000, 3000, 320), (320, 240));
        assert_eq!(fit(100_000, 1, 320), (320, 1));
        assert_eq!(fit(320, 10, 320), (320, 10));
        assert_eq!(fit(100, 80, 320), (100, 80));
        assert_eq!(fit(1, 1, 320), (1, 1));
    }

    #[test]
    fn every_supported_format_renders() {
        // GIVEN the same 640x480 picture as PNG, JPEG, GIF and WebP
        let picture = DynamicImage::ImageRgb8(RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        }));
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let bytes = match format {
                ImageFormat::Gif => encoded(DynamicImage::ImageRgba8(picture.to_rgba8()), format),
                _ => encoded(picture.clone(), format),
            };
            // WHEN each is rendered
            let thumb = render(&bytes, 40_000_000).unwrap();
            // THEN each gives a 320x240 JPEG
            assert_eq!((thumb.width, thumb.height), (320, 240), "{format:?}");
            assert_eq!((thumb.source_width, thumb.source_height), (640, 480));
            let back = decoded_jpeg(&thumb.jpeg);
            assert_eq!((back.width(), back.height()), (320, 240));
        }
    }

    #[test]
    fn transparency_becomes_white() {
        // GIVEN a fully transparent (black-valued) PNG
        let clear = RgbaImage::from_pixel(50, 50, Rgba([0, 0, 0, 0]));
        let bytes = encoded(DynamicImage::ImageRgba8(clear), ImageFormat::Png);
        // WHEN it is rendered
        let thumb = render(&bytes, 40_000_000).unwrap();
        // THEN the thumbnail is white, not black
        let px = decoded_jpeg(&thumb.jpeg).to_rgb8().get_pixel(25, 25).0;
        assert!(px.iter().all(|&c| c > 245), "{px:?}");
    }

    #[test]
    fn the_pixel_budget_is_checked_on_the_header() {
        // GIVEN a 2000x2000 PNG and a budget of one million pixels
        let bytes = encoded(
            DynamicImage::ImageRgb8(RgbImage::new(2000, 2000)),
            ImageFormat::Png,
        );
        // WHEN it is rendered
        let err = render(&bytes, 1_000_000).unwrap_err();
        // THEN it is refused as too many pixels, and the refusal is not worth a retry
        assert!(matches!(
            err,
            Error::TooManyPixels {
                width: 2000,
                height: 2000,
                max: 1_000_000
            }
        ));
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_16_bit_image_over_the_allocation_budget_is_refused() {
        // GIVEN a 16-bit RGBA PNG (8 bytes a pixel) exactly at the pixel budget
        let wide = image::ImageBuffer::<Rgba<u16>, _>::new(100, 100);
        let bytes = encoded(DynamicImage::ImageRgba16(wide), ImageFormat::Png);
        // WHEN it is rendered
        let err = render(&bytes, 10_000).unwrap_err();
        // THEN the decoder refuses to allocate twice the budget
        assert!(
            matches!(err, Error::Image(ImageError::Limits(_))),
            "{err:?}"
        );
        // AND with room for it, it renders
        assert_eq!(render(&bytes, 20_000).unwrap().width, 100);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // GIVEN a 200x100 JPEG whose EXIF says "rotate 90° clockwise" (orientation 6)
        let plain = encoded(
            DynamicImage::ImageRgb8(RgbImage::new(200, 100)),
            ImageFormat::Jpeg,
        );
        let bytes = with_exif_orientation(&plain, 6);
        // WHEN it is rendered
        let thumb = render(&bytes, 40_000_000).unwrap();
        // THEN the thumbnail stands upright
        assert_eq!((thumb.width, thumb.height), (100, 200));
    }

    /// Inserts an APP1 EXIF segment with one Orientation entry after the SOI marker.
    fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}
