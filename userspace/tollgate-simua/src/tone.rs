//! The test tone: 440 Hz, G.711 µ-law, 160 samples (20 ms) per frame. Frame `k` starts at
//! sample `k * 160`, so its bytes depend on the sequence number and a lost, reordered or
//! corrupted frame is detected by comparing with [`frame`].

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// G.711 µ-law encoding of a 16-bit linear sample (ITU-T G.711).
pub fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && s & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mant = (s >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) as u8 | mant as u8)
}

/// The payload of frame `k` (samples `k*160 .. k*160+160`), tagged with `call` in the tone's
/// amplitude so two calls' audio never look alike.
pub fn frame(k: u64, call: u32) -> [u8; FRAME] {
    let amp = 8000.0 + f64::from(call % 64) * 200.0;
    let mut out = [0u8; FRAME];
    for (n, o) in out.iter_mut().enumerate() {
        let t = (k * FRAME as u64 + n as u64) as f64 / 8000.0;
        let v = amp * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
        *o = ulaw(v as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw(0), 0xff);
        assert_eq!(ulaw(-1), 0x7f);
        assert_eq!(ulaw(32767), 0x80);
        assert_eq!(ulaw(-32768), 0x00);
    }

    #[test]
    fn frames_differ_by_sequence_and_call() {
        assert_ne!(frame(0, 1), frame(1, 1));
        assert_ne!(frame(5, 1), frame(5, 2));
        assert_eq!(frame(7, 3), frame(7, 3));
    }
}
