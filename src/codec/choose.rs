//! The per-chunk codec decision: a pure function of one chunk's bytes and the
//! store's settings ([`plan`]).
//!
//! Trust (design invariant: stored sizes never depend on what other principals
//! stored): nothing here keeps state between chunks, so the same bytes under
//! the same settings always get the same plan and the same stored size.
//!
//! Cost: one histogram pass over at most [`SAMPLE_BYTES`] of the chunk gives
//! four byte histograms, one per position `i % 4`. Their order-0 entropies
//! estimate how well the chunk compresses as is (the four merged), as two
//! byte planes (pairs merged: bf16/fp16) and as four (float32). Only the
//! winner is then compressed, and never when no estimate promises a saving.

/// The settings the decision depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecSettings {
    /// zstd level (1–19); 0 stores every chunk raw.
    pub level: i32,
    /// Whether the byte-plane transforms may be chosen.
    pub byte_planes: bool,
}

impl Default for CodecSettings {
    fn default() -> Self {
        CodecSettings {
            level: DEFAULT_LEVEL,
            byte_planes: true,
        }
    }
}

/// Default zstd level, chosen by `benches/corpus_bench.sh` (docs/performance.md).
pub const DEFAULT_LEVEL: i32 = 3;

/// Bytes of a chunk the histograms look at, at most.
pub const SAMPLE_BYTES: usize = 64 << 10;
/// Sampled blocks of a long chunk (a multiple of 4 bytes each, at offsets
/// that are multiples of 4, so plane membership is that of the chunk).
const SAMPLE_BLOCKS: usize = 16;

/// A stored form must save at least `1/MIN_SAVING_DIVISOR` of the chunk, or
/// the chunk is stored raw (decoding costs CPU on every read).
pub const MIN_SAVING_DIVISOR: usize = 32;

/// Above this estimated order-0 entropy (bits per byte) no transform can
/// reach the minimum saving: the chunk is stored raw without compressing.
/// A plane above it is stored raw inside a byte-plane chunk.
pub const INCOMPRESSIBLE_BITS: f64 = 8.0 - 8.0 / MIN_SAVING_DIVISOR as f64 - 0.05;

/// Byte planes must beat the chunk as is by this many bits per byte to be
/// chosen without compressing both ways.
const CLEAR_GAIN_BITS: f64 = 0.5;
/// Below this gain the planes are not considered at all; between the two,
/// both forms are compressed and the smaller kept (rare: mixed content).
const MIN_GAIN_BITS: f64 = 0.1;
/// A chunk whose raw estimate is below this is text-like: its string matches
/// (which planes would break) matter more than order-0 statistics, so the
/// planes are only taken if they compress smaller in fact.
const TEXT_LIKE_BITS: f64 = 6.0;

/// Four planes must beat two by this much (bits per byte) to be chosen.
const WIDTH4_GAIN_BITS: f64 = 0.05;

/// Chunks shorter than this are stored raw: a frame header would eat any gain.
const MIN_CHUNK_BYTES: usize = 64;

/// What to do with one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Store as is.
    Raw,
    /// One zstd frame of the whole chunk.
    Zstd,
    /// Byte planes of `width` bytes; `compress[k]` says whether plane `k` is
    /// worth a zstd frame (planes near 8 bits of entropy are kept raw).
    Planes {
        /// 2 or 4.
        width: usize,
        /// Per plane: compress it.
        compress: [bool; 4],
    },
    /// Mixed evidence: compress as [`Plan::Zstd`] and as these planes, keep
    /// the smaller.
    Both {
        /// 2 or 4.
        width: usize,
        /// Per plane: compress it.
        compress: [bool; 4],
    },
}

/// Order-0 entropy estimates of one chunk, in bits per byte.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The chunk as is.
    pub raw: f64,
    /// Each of the two planes (positions `i % 2`).
    pub planes2: [f64; 2],
    /// Each of the four planes (positions `i % 4`).
    pub planes4: [f64; 4],
}

impl Estimate {
    /// Mean over the planes of `width` (2 or 4).
    pub fn planes_mean(&self, width: usize) -> f64 {
        if width == 2 {
            (self.planes2[0] + self.planes2[1]) / 2.0
        } else {
            self.planes4.iter().sum::<f64>() / 4.0
        }
    }
}

/// Decides how to store `raw`; the same bytes and settings always give the
/// same plan.
pub fn plan(raw: &[u8], settings: &CodecSettings) -> Plan {
    if settings.level == 0 || raw.len() < MIN_CHUNK_BYTES {
        return Plan::Raw;
    }
    let est = estimate(raw);
    // Four planes only when they beat two: on bf16/fp16 data they see the
    // same two distributions twice, and the difference is sampling noise.
    let (width, planes) = if est.planes_mean(4) < est.planes_mean(2) - WIDTH4_GAIN_BITS {
        (4, est.planes_mean(4))
    } else {
        (2, est.planes_mean(2))
    };
    let gain = est.raw - planes;
    let use_planes = settings.byte_planes && gain >= MIN_GAIN_BITS && raw.len() >= 4 * width;
    if !use_planes {
        return if est.raw > INCOMPRESSIBLE_BITS {
            Plan::Raw
        } else {
            Plan::Zstd
        };
    }
    if planes > INCOMPRESSIBLE_BITS {
        return Plan::Raw;
    }
    let mut compress = [false; 4];
    for (k, c) in compress.iter_mut().enumerate().take(width) {
        let h = if width == 2 {
            est.planes2[k]
        } else {
            est.planes4[k]
        };
        *c = h <= INCOMPRESSIBLE_BITS;
    }
    if gain >= CLEAR_GAIN_BITS && est.raw >= TEXT_LIKE_BITS {
        Plan::Planes { width, compress }
    } else {
        Plan::Both { width, compress }
    }
}

/// Order-0 entropy estimates of `raw` from a sample of at most
/// [`SAMPLE_BYTES`] (Miller–Madow corrected, so small samples do not make
/// the planes, which see a quarter of the bytes each, look better than they are).
pub fn estimate(raw: &[u8]) -> Estimate {
    let mut hist = [[0u32; 256]; 4];
    if raw.len() <= SAMPLE_BYTES {
        count(raw, &mut hist);
    } else {
        let block = (SAMPLE_BYTES / SAMPLE_BLOCKS) & !3;
        let stride = ((raw.len() - block) / (SAMPLE_BLOCKS - 1)) & !3;
        for b in 0..SAMPLE_BLOCKS {
            let start = b * stride;
            count(&raw[start..start + block], &mut hist);
        }
    }
    let mut pair = [[0u32; 256]; 2];
    let mut all = [0u32; 256];
    for v in 0..256 {
        pair[0][v] = hist[0][v] + hist[2][v];
        pair[1][v] = hist[1][v] + hist[3][v];
        all[v] = pair[0][v] + pair[1][v];
    }
    Estimate {
        raw: entropy(&all),
        planes2: [entropy(&pair[0]), entropy(&pair[1])],
        planes4: [
            entropy(&hist[0]),
            entropy(&hist[1]),
            entropy(&hist[2]),
            entropy(&hist[3]),
        ],
    }
}

/// Adds the bytes of `data` to the histogram of their position mod 4 (the
/// caller passes slices starting at multiples of 4 from the chunk start).
fn count(data: &[u8], hist: &mut [[u32; 256]; 4]) {
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        hist[0][usize::from(q[0])] += 1;
        hist[1][usize::from(q[1])] += 1;
        hist[2][usize::from(q[2])] += 1;
        hist[3][usize::from(q[3])] += 1;
    }
    for (k, &b) in quads.remainder().iter().enumerate() {
        hist[k][usize::from(b)] += 1;
    }
}

/// Shannon entropy of a histogram in bits per symbol, Miller–Madow corrected
/// and capped at 8.
fn entropy(hist: &[u32; 256]) -> f64 {
    let n: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    let mut h = 0.0;
    let mut used = 0u32;
    for &c in hist.iter().filter(|&&c| c > 0) {
        let p = f64::from(c) / nf;
        h -= p * p.log2();
        used += 1;
    }
    let correction = f64::from(used.saturating_sub(1)) / (2.0 * nf * std::f64::consts::LN_2);
    (h + correction).min(8.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Float32 values like trained weights: small normal-ish magnitudes.
    fn weights(n: usize, seed: u64) -> Vec<u8> {
        let r = noise(n * 4, seed);
        r.chunks_exact(4)
            .flat_map(|q| {
                let u = f32::from(u16::from_le_bytes([q[0], q[1]])) / 65536.0 - 0.5;
                let v = f32::from(u16::from_le_bytes([q[2], q[3]])) / 65536.0 - 0.5;
                (0.02 * u * v * 4.0).to_le_bytes()
            })
            .collect()
    }

    fn settings() -> CodecSettings {
        CodecSettings::default()
    }

    #[test]
    fn random_bytes_are_stored_raw_without_compressing() {
        assert_eq!(plan(&noise(64 << 10, 3), &settings()), Plan::Raw);
        assert_eq!(plan(&noise(200 << 10, 4), &settings()), Plan::Raw);
    }

    #[test]
    fn float32_weights_get_four_planes() {
        let w = weights(16 << 10, 5);
        match plan(&w, &settings()) {
            Plan::Planes { width: 4, compress } => assert!(compress[3]),
            other => panic!("unexpected plan {other:?}"),
        }
        // A chunk starting at an odd offset of the tensor: planes rotate.
        match plan(&w[3..], &settings()) {
            Plan::Planes { width: 4, compress } => assert!(compress[0]),
            other => panic!("unexpected plan {other:?}"),
        }
    }

    #[test]
    fn bf16_gets_two_planes() {
        let w: Vec<u8> = weights(32 << 10, 6)
            .chunks_exact(4)
            .flat_map(|q| [q[2], q[3]])
            .collect();
        assert!(matches!(
            plan(&w, &settings()),
            Plan::Planes { width: 2, .. }
        ));
    }

    #[test]
    fn text_gets_plain_zstd() {
        let text: String = (0..3000u32)
            .map(|i| {
                format!(
                    "    let value_{i} = table.get({}).unwrap_or(&{i});\n",
                    i * 7 % 13
                )
            })
            .collect();
        assert_eq!(plan(text.as_bytes(), &settings()), Plan::Zstd);
        // Text with a period of 4 bytes: the planes look better, so both
        // forms are tried and the smaller kept.
        let periodic = "abc\n".repeat(5000) + &"xyz\t".repeat(5000);
        assert!(matches!(
            plan(periodic.as_bytes(), &settings()),
            Plan::Both { .. } | Plan::Zstd
        ));
    }

    #[test]
    fn settings_switch_planes_and_compression_off() {
        let w = weights(16 << 10, 7);
        let no_planes = CodecSettings {
            byte_planes: false,
            ..settings()
        };
        assert_eq!(plan(&w, &no_planes), Plan::Zstd);
        let off = CodecSettings {
            level: 0,
            ..settings()
        };
        assert_eq!(plan(&w, &off), Plan::Raw);
        assert_eq!(plan(&w[..10], &settings()), Plan::Raw);
    }

    #[test]
    fn the_decision_is_a_function_of_the_chunk() {
        let w = weights(70_000, 8);
        let first = plan(&w, &settings());
        let _ = plan(&noise(1 << 16, 9), &settings());
        assert_eq!(plan(&w, &settings()), first);
    }

    #[test]
    fn long_chunks_are_sampled() {
        let mut w = weights(100_000, 10);
        w.extend(noise(3, 11));
        let est = estimate(&w);
        assert!(est.raw > est.planes_mean(4) + CLEAR_GAIN_BITS, "{est:?}");
    }
}
