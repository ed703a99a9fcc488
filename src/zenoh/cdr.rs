//! A CDR writer (XCDR1, little-endian: what ROS 2 middlewares put on the
//! wire) into a caller's buffer that is reused from one message to the
//! next.
//!
//! A message starts with the 4-byte encapsulation header `00 01 00 00`
//! (CDR_LE); every primitive is aligned to its size, counted from the end
//! of that header. Strings are a `u32` length that counts the terminating
//! NUL, the bytes, then the NUL; sequences are a `u32` element count, then
//! the elements. Writing only appends: once the buffer's capacity holds the
//! largest message, nothing allocates.

/// The CDR_LE encapsulation header (representation id 0x0001, options 0).
pub const ENCAPSULATION_LE: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Writes one CDR message into a buffer (cleared first).
pub struct CdrWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> CdrWriter<'a> {
    /// Clears `buf` and writes the encapsulation header.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&ENCAPSULATION_LE);
        Self { buf }
    }

    /// Bytes written so far, the header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing but the header is written.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == ENCAPSULATION_LE.len()
    }

    /// Pads with zeros to a multiple of `n` bytes from the end of the
    /// encapsulation header.
    fn align(&mut self, n: usize) {
        let pos = self.buf.len() - ENCAPSULATION_LE.len();
        let pad = (n - pos % n) % n;
        self.buf.extend_from_slice(&[0u8; 8][..pad]);
    }

    /// A `uint8` (or `byte`, `bool`).
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A `uint32`.
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An `int32`.
    pub fn i32(&mut self, v: i32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `float32`.
    pub fn f32(&mut self, v: f32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `float64`.
    pub fn f64(&mut self, v: f64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `string`.
    pub fn string(&mut self, s: &str) {
        self.u32(s.len() as u32 + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// A `string` holding the decimal digits of `v`, without formatting
    /// into a `String`.
    pub fn string_u32(&mut self, v: u32) {
        let mut digits = [0u8; 10];
        let mut n = 0;
        let mut x = v;
        loop {
            digits[n] = b'0' + (x % 10) as u8;
            n += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        self.u32(n as u32 + 1);
        self.buf.extend(digits[..n].iter().rev());
        self.buf.push(0);
    }

    /// The element count of a sequence (the elements follow).
    pub fn sequence_len(&mut self, n: usize) {
        self.u32(n as u32);
    }

    /// A `uint8[]` sequence.
    pub fn bytes(&mut self, data: &[u8]) {
        self.sequence_len(data.len());
        self.buf.extend_from_slice(data);
    }

    /// Raw `uint8` elements of a sequence whose length was written with
    /// [`sequence_len`](Self::sequence_len).
    pub fn raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_alignment_and_strings() {
        let mut buf = Vec::new();
        let mut w = CdrWriter::new(&mut buf);
        assert!(w.is_empty());
        w.u8(7);
        w.u32(0x0102_0304);
        w.string("ab");
        w.f64(1.5);
        w.string_u32(0);
        w.string_u32(4_294_967_295);
        assert_eq!(w.len(), buf.len());
        let want: Vec<u8> = [
            &ENCAPSULATION_LE[..],
            &[7, 0, 0, 0],                // u8 at 0, then padding to 4
            &[4, 3, 2, 1],                // u32 at 4
            &[3, 0, 0, 0, b'a', b'b', 0], // string at 8: length 3 (NUL counted)
            &[0],                         // 15 padded to 16 for the f64
            &1.5f64.to_le_bytes(),        // f64 at 16
            &[2, 0, 0, 0, b'0', 0],       // "0" at 24
            &[0, 0],                      // 30 padded to 32
            &[11, 0, 0, 0],               // "4294967295" at 32
            b"4294967295\0",
        ]
        .concat();
        assert_eq!(buf, want);
    }

    #[test]
    fn reuse_clears_and_keeps_capacity() {
        let mut buf = Vec::with_capacity(64);
        CdrWriter::new(&mut buf).bytes(&[1, 2, 3]);
        assert_eq!(buf, [0, 1, 0, 0, 3, 0, 0, 0, 1, 2, 3]);
        let ptr = buf.as_ptr();
        CdrWriter::new(&mut buf).i32(-2);
        assert_eq!(buf, [0, 1, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(buf.as_ptr(), ptr);
    }
}
