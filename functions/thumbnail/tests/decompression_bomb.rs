//! Decompression bombs cost almost nothing: measured with a counting allocator, rendering an
//! image whose header announces billions of pixels allocates a few kilobytes, and an image
//! within the budget allocates in proportion to its pixels.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use thumbnail::{render, Error};

/// Counts the bytes live on the current thread, and the peak since the last reset.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated on this thread while `f` runs, above what was live before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as usize)
}

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

/// A PNG whose header claims `width`x`height` 8-bit RGBA pixels, with a truncated IDAT.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x60, 0x00]);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A GIF whose screen and first frame claim 65535x65535 pixels, with a token of LZW data.
fn gif_claiming_65535_squared() -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0, 0]); // screen, 2-colour table
    out.extend_from_slice(&[0, 0, 0, 0xFF, 0xFF, 0xFF]);
    out.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]); // image descriptor
    out.extend_from_slice(&[2, 2, 0x4C, 0x01, 0, 0x3B]); // LZW min size 2, one block, trailer
    out
}

#[test]
fn a_png_bomb_is_refused_after_a_few_kilobytes() {
    // GIVEN a PNG claiming 100000x100000 RGBA pixels (40 GB decoded) under the default budget
    let bomb = png_claiming(100_000, 100_000);
    // WHEN it is rendered
    let (result, peak) = peak_during(|| render(&bomb, 40_000_000));
    // THEN it is refused on its header, having allocated next to nothing
    assert!(
        matches!(result, Err(Error::TooManyPixels { .. })),
        "{result:?}"
    );
    assert!(peak < 1 << 20, "peak {peak} bytes");
}

#[test]
fn a_gif_bomb_is_refused_after_a_few_kilobytes() {
    // GIVEN a GIF claiming 65535x65535 pixels
    let bomb = gif_claiming_65535_squared();
    // WHEN it is rendered
    let (result, peak) = peak_during(|| render(&bomb, 40_000_000));
    // THEN it is refused before its frame is decoded
    assert!(
        matches!(
            result,
            Err(Error::TooManyPixels {
                width: 65535,
                height: 65535,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(peak < 1 << 20, "peak {peak} bytes");
}

#[test]
fn a_truncated_png_within_budget_costs_at_most_its_decoded_size() {
    // GIVEN a PNG claiming 2000x2000 RGBA pixels (16 MB decoded) with truncated data
    let png = png_claiming(2000, 2000);
    // WHEN it is rendered
    let (result, peak) = peak_during(|| render(&png, 40_000_000));
    // THEN it fails as corrupt, having allocated about one decoded image, not more
    assert!(matches!(result, Err(Error::Image(_))), "{result:?}");
    // (the lower bound shows the counter sees the decoder's buffer)
    assert!(
        (2000 * 2000 * 4..=2000 * 2000 * 4 + (1 << 20)).contains(&peak),
        "peak {peak} bytes"
    );
}
