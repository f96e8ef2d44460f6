//! Content-defined chunking: FastCDC 2020 over a stream of byte slices.
//!
//! Pure and I/O free. The cut points depend only on the content and on
//! [`ChunkerParams`], never on how the stream was split into slices — that is
//! what makes dedup work across deposits (invariant 2), and it is checked by a
//! property test below. The parameters travel in every manifest so that the
//! defaults can change without breaking old artifacts.

use fastcdc::v2020;
use serde::{Deserialize, Serialize};

/// Identifier of the chunking algorithm recorded in manifests.
pub const FASTCDC_2020: &str = "fastcdc-2020";

/// Chunker parameters, recorded per manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk, except the last one of a stream.
    pub min_bytes: u32,
    /// Target average chunk size (a power of two).
    pub avg_bytes: u32,
    /// Largest chunk.
    pub max_bytes: u32,
    /// FastCDC normalization level (0–3).
    pub normalization: u8,
}

impl Default for ChunkerParams {
    /// 16 KiB / 64 KiB / 256 KiB, normalization level 1.
    fn default() -> Self {
        ChunkerParams {
            min_bytes: 16 * 1024,
            avg_bytes: 64 * 1024,
            max_bytes: 256 * 1024,
            normalization: 1,
        }
    }
}

/// Parameters outside what FastCDC 2020 accepts.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunker parameters: {0}")]
pub struct InvalidParams(&'static str);

impl ChunkerParams {
    /// Checks the parameters against FastCDC's limits.
    pub fn validate(&self) -> Result<(), InvalidParams> {
        if !(v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&self.min_bytes) {
            return Err(InvalidParams("min_bytes out of range"));
        }
        if !(v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&self.avg_bytes)
            || !self.avg_bytes.is_power_of_two()
        {
            return Err(InvalidParams("avg_bytes must be a power of two in range"));
        }
        if !(v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&self.max_bytes) {
            return Err(InvalidParams("max_bytes out of range"));
        }
        if !(self.min_bytes <= self.avg_bytes && self.avg_bytes <= self.max_bytes) {
            return Err(InvalidParams("need min <= avg <= max"));
        }
        if self.normalization > 3 {
            return Err(InvalidParams("normalization is 0..=3"));
        }
        Ok(())
    }
}

/// Streaming FastCDC: feed slices with [`push`](Self::push), receive every
/// chunk whose end no longer depends on future bytes; [`finish`](Self::finish)
/// emits the rest.
pub struct StreamChunker {
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64, u64, u64),
    window: Vec<u8>,
    /// Bytes at the front of `window` already emitted.
    start: usize,
}

impl StreamChunker {
    /// A chunker for validated parameters.
    pub fn new(params: ChunkerParams) -> Result<Self, InvalidParams> {
        params.validate()?;
        let bits = v2020::logarithm2(params.avg_bytes);
        let norm = u32::from(params.normalization);
        let mask_s = v2020::MASKS[(bits + norm) as usize];
        let mask_l = v2020::MASKS[(bits - norm) as usize];
        Ok(StreamChunker {
            min: params.min_bytes as usize,
            avg: params.avg_bytes as usize,
            max: params.max_bytes as usize,
            masks: (mask_s, mask_l, mask_s << 1, mask_l << 1),
            window: Vec::with_capacity(params.max_bytes as usize * 2),
            start: 0,
        })
    }

    fn cut(&self, data: &[u8]) -> usize {
        let (s, l, sls, lls) = self.masks;
        let (_, len) = v2020::cut(data, self.min, self.avg, self.max, s, l, sls, lls);
        len
    }

    /// Appends `data`, calling `emit` for each chunk that is now final.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        // Compact only when the consumed prefix outweighs the rest, so small
        // pushes cost amortised O(1) moves per byte.
        if self.start > 0 && self.start >= self.window.len() - self.start {
            self.window.drain(..self.start);
            self.start = 0;
        }
        self.window.extend_from_slice(data);
        let mut pos = self.start;
        // A cut is final once `max` bytes are visible: FastCDC never looks further.
        while self.window.len() - pos >= self.max {
            let len = self.cut(&self.window[pos..]);
            emit(&self.window[pos..pos + len]);
            pos += len;
        }
        self.start = pos;
    }

    /// Emits the remaining bytes as the last chunk(s) of the stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        let mut pos = self.start;
        while pos < self.window.len() {
            let len = self.cut(&self.window[pos..]);
            emit(&self.window[pos..pos + len]);
            pos += len;
        }
        self.window.clear();
        self.start = 0;
    }

    /// Bytes buffered and not yet emitted (less than `max` after a push).
    pub fn buffered(&self) -> usize {
        self.window.len() - self.start
    }
}

/// Chunk boundaries of a whole buffer, as (offset, length) pairs.
pub fn chunk_all(params: ChunkerParams, data: &[u8]) -> Result<Vec<(usize, usize)>, InvalidParams> {
    let mut chunker = StreamChunker::new(params)?;
    let mut out = Vec::new();
    let mut off = 0;
    let mut record = |c: &[u8]| {
        out.push((off, c.len()));
        off += c.len();
    };
    chunker.push(data, &mut record);
    chunker.finish(&mut record);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn matches_fastcdc_reference() {
        let p = ChunkerParams::default();
        let data = pseudo_random(3 << 20, 7);
        let ours = chunk_all(p, &data).unwrap();
        let reference: Vec<(usize, usize)> =
            v2020::FastCDC::new(&data, p.min_bytes, p.avg_bytes, p.max_bytes)
                .map(|c| (c.offset, c.length))
                .collect();
        assert_eq!(ours, reference);
        assert!(ours.iter().all(|&(_, l)| l <= p.max_bytes as usize));
    }

    #[test]
    fn empty_stream_has_no_chunks() {
        assert!(chunk_all(ChunkerParams::default(), &[]).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_params() {
        let p = ChunkerParams {
            avg_bytes: 1000,
            ..ChunkerParams::default()
        };
        assert!(p.validate().is_err());
        let p = ChunkerParams {
            min_bytes: 1 << 20,
            ..ChunkerParams::default()
        };
        assert!(p.validate().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Cut points do not depend on how the stream is sliced.
        #[test]
        fn slicing_does_not_move_cuts(seed in any::<u64>(), len in 0usize..1_200_000,
                                      splits in proptest::collection::vec(1usize..200_000, 0..12)) {
            let p = ChunkerParams::default();
            let data = pseudo_random(len, seed);
            let whole = chunk_all(p, &data).unwrap();
            let mut chunker = StreamChunker::new(p).unwrap();
            let mut got = Vec::new();
            let mut off = 0;
            let mut rest = &data[..];
            for s in splits {
                let s = s.min(rest.len());
                let (head, tail) = rest.split_at(s);
                chunker.push(head, |c| { got.push((off, c.len())); off += c.len(); });
                rest = tail;
            }
            chunker.push(rest, |c| { got.push((off, c.len())); off += c.len(); });
            chunker.finish(|c| { got.push((off, c.len())); off += c.len(); });
            prop_assert_eq!(got, whole);
        }
    }
}
