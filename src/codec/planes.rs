//! Byte planes (the BG4/BG2 regrouping Hugging Face Xet uses for model
//! files): plane `k` of width `W` holds the bytes at positions `i` with
//! `i % W == k`, in order; the last `n % W` bytes (the tail) stay as they are.
//!
//! In float tensors the sign/exponent bytes are nearly constant and the low
//! mantissa bytes nearly random; grouped, each plane has its own statistics
//! and zstd's entropy coder gets close to each plane's order-0 entropy.
//!
//! Stored form of a byte-plane chunk (`W` = 2 or 4, `n` = raw length from the
//! pack footer, every plane `n / W` bytes long):
//!
//! ```text
//! W × { mode u8 (0 = raw, 1 = zstd frame) | stored_len u32 LE }
//! the W stored planes, back to back
//! the tail: n % W raw bytes
//! ```

use super::CodecError;

/// Bytes of the per-plane header.
pub const PLANE_HEADER_LEN: usize = 5;
const MODE_RAW: u8 = 0;
const MODE_ZSTD: u8 = 1;

/// Splits `raw` into `width` planes written back to back into `out` (cleared
/// first): `out[k * m + i] = raw[i * width + k]` with `m = raw.len() / width`.
/// The tail is not copied.
pub fn split(raw: &[u8], width: usize, out: &mut Vec<u8>) {
    let m = raw.len() / width;
    out.clear();
    out.resize(m * width, 0);
    match width {
        4 => {
            let (p0, rest) = out.split_at_mut(m);
            let (p1, rest) = rest.split_at_mut(m);
            let (p2, p3) = rest.split_at_mut(m);
            for (i, q) in raw.chunks_exact(4).enumerate() {
                p0[i] = q[0];
                p1[i] = q[1];
                p2[i] = q[2];
                p3[i] = q[3];
            }
        }
        2 => {
            let (p0, p1) = out.split_at_mut(m);
            for (i, q) in raw.chunks_exact(2).enumerate() {
                p0[i] = q[0];
                p1[i] = q[1];
            }
        }
        _ => {
            for (i, q) in raw.chunks_exact(width).enumerate() {
                for (k, &b) in q.iter().enumerate() {
                    out[k * m + i] = b;
                }
            }
        }
    }
}

/// Inverse of [`split`]: interleaves `width` planes of `planes.len() / width`
/// bytes each into `out` (appended).
pub fn join(planes: &[u8], width: usize, out: &mut Vec<u8>) {
    let m = planes.len() / width;
    let start = out.len();
    out.resize(start + m * width, 0);
    let dst = &mut out[start..];
    match width {
        4 => {
            let (p0, rest) = planes.split_at(m);
            let (p1, rest) = rest.split_at(m);
            let (p2, p3) = rest.split_at(m);
            for (i, q) in dst.chunks_exact_mut(4).enumerate() {
                q[0] = p0[i];
                q[1] = p1[i];
                q[2] = p2[i];
                q[3] = p3[i];
            }
        }
        2 => {
            let (p0, p1) = planes.split_at(m);
            for (i, q) in dst.chunks_exact_mut(2).enumerate() {
                q[0] = p0[i];
                q[1] = p1[i];
            }
        }
        _ => {
            for (i, q) in dst.chunks_exact_mut(width).enumerate() {
                for (k, b) in q.iter_mut().enumerate() {
                    *b = planes[k * m + i];
                }
            }
        }
    }
}

/// Encodes `raw` as byte planes into `out` (cleared first). `compress[k]`
/// says whether plane `k` gets a zstd frame; a frame that would not be
/// smaller than its plane is replaced by the raw plane. `planes` and `frame`
/// are scratch buffers.
pub fn encode(
    raw: &[u8],
    width: usize,
    compress: &[bool; 4],
    compressor: &mut zstd::bulk::Compressor<'static>,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) {
    split(raw, width, &mut scratch.planes);
    let m = raw.len() / width;
    out.clear();
    out.resize(width * PLANE_HEADER_LEN, 0);
    for k in 0..width {
        let plane = &scratch.planes[k * m..(k + 1) * m];
        scratch.frame.clear();
        // zstd's worst case, so the outcome never depends on a capacity left
        // over from an earlier chunk (see `CompressionPolicy::encode`).
        scratch.frame.reserve(zstd::zstd_safe::compress_bound(m));
        let framed = compress[k]
            && matches!(compressor.compress_to_buffer(plane, &mut scratch.frame), Ok(n) if n < m);
        let (mode, body) = if framed {
            (MODE_ZSTD, &scratch.frame[..])
        } else {
            (MODE_RAW, plane)
        };
        let h = &mut out[k * PLANE_HEADER_LEN..(k + 1) * PLANE_HEADER_LEN];
        h[0] = mode;
        h[1..5].copy_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
    out.extend_from_slice(&raw[m * width..]);
}

/// Scratch buffers reused between chunks (contents never carry over).
#[derive(Default)]
pub struct Scratch {
    planes: Vec<u8>,
    frame: Vec<u8>,
}

/// Decodes a byte-plane chunk of `raw_len` bytes.
///
/// # Errors
///
/// [`CodecError`] when the header, a plane's length or a zstd frame does not
/// add up to exactly `raw_len` bytes.
pub fn decode(stored: &[u8], width: usize, raw_len: usize) -> Result<Vec<u8>, CodecError> {
    let m = raw_len / width;
    let header_len = width * PLANE_HEADER_LEN;
    let header = stored.get(..header_len).ok_or(CodecError::Truncated)?;
    let mut planes = vec![0u8; m * width];
    let mut pos = header_len;
    for (k, h) in header.chunks_exact(PLANE_HEADER_LEN).enumerate() {
        let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let body = pos
            .checked_add(len)
            .and_then(|end| stored.get(pos..end))
            .ok_or(CodecError::Truncated)?;
        pos += len;
        let dst = &mut planes[k * m..(k + 1) * m];
        match h[0] {
            MODE_RAW if len == m => dst.copy_from_slice(body),
            MODE_ZSTD => {
                let n = zstd::bulk::decompress_to_buffer(body, dst)
                    .map_err(|_| CodecError::BadFrame)?;
                if n != m {
                    return Err(CodecError::WrongLength);
                }
            }
            MODE_RAW => return Err(CodecError::WrongLength),
            other => return Err(CodecError::UnknownPlaneMode(other)),
        }
    }
    let tail = &stored[pos..];
    if tail.len() != raw_len - m * width {
        return Err(CodecError::WrongLength);
    }
    let mut out = Vec::with_capacity(raw_len);
    join(&planes, width, &mut out);
    out.extend_from_slice(tail);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_are_inverse_for_every_width_and_tail() {
        for width in [2usize, 3, 4] {
            for n in 0..=width * 3 + 3 {
                let raw: Vec<u8> = (0..n as u8).collect();
                let mut planes = Vec::new();
                split(&raw, width, &mut planes);
                let m = n / width;
                for k in 0..width {
                    for i in 0..m {
                        assert_eq!(planes[k * m + i], raw[i * width + k]);
                    }
                }
                let mut back = Vec::new();
                join(&planes, width, &mut back);
                back.extend_from_slice(&raw[m * width..]);
                assert_eq!(back, raw, "width {width} n {n}");
            }
        }
    }

    #[test]
    fn malformed_plane_chunks_are_errors_not_panics() {
        let raw: Vec<u8> = (0..1000u32)
            .flat_map(|v| (v as f32).to_le_bytes())
            .collect();
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let mut out = Vec::new();
        encode(
            &raw,
            4,
            &[true; 4],
            &mut c,
            &mut Scratch::default(),
            &mut out,
        );
        assert_eq!(decode(&out, 4, raw.len()).unwrap(), raw);
        assert!(matches!(
            decode(&out[..7], 4, raw.len()),
            Err(CodecError::Truncated)
        ));
        assert!(decode(&out, 4, raw.len() + 1).is_err());
        assert!(decode(&out[..out.len() - 1], 4, raw.len()).is_err());
        let mut bad_mode = out.clone();
        bad_mode[0] = 9;
        assert!(matches!(
            decode(&bad_mode, 4, raw.len()),
            Err(CodecError::UnknownPlaneMode(9))
        ));
        let mut huge = out.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&huge, 4, raw.len()),
            Err(CodecError::Truncated)
        ));
    }
}
