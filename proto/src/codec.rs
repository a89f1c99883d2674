//! Primitive encoding: big-endian integers, length-prefixed strings and
//! bytes. Every read checks its bounds and returns an error, never panics.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a value.
    #[error("truncated message")]
    Truncated,
    /// A length field exceeds what the protocol allows.
    #[error("length {len} exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// A string is not UTF-8.
    #[error("a string is not valid UTF-8")]
    Utf8,
    /// A message type byte this version does not know.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// A value outside its allowed set.
    #[error("bad value for {0}")]
    BadValue(&'static str),
    /// Bytes left over after a complete message.
    #[error("{0} unexpected trailing bytes")]
    Trailing(usize),
}

/// A cursor over a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue("bool")),
        }
    }

    /// Bytes with a u16 length, at most `max`.
    pub fn bytes16(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(DecodeError::TooLong { len, max });
        }
        self.take(len)
    }

    /// Bytes with a u32 length, at most `max`.
    pub fn bytes32(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { len, max });
        }
        self.take(len)
    }

    /// A UTF-8 string with a u16 length, at most `max` bytes.
    pub fn string(&mut self, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes16(max)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8)
    }

    /// Fails unless everything was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
}

/// Appends encodings to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    /// Writes at most `u16::MAX` bytes; longer input is cut (callers keep
    /// their fields within the protocol's limits, which are far smaller).
    pub fn bytes16(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.u16(v.len() as u16);
        self.buf.extend_from_slice(v);
    }
    pub fn bytes32(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(u32::MAX as usize)];
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn string(&mut self, v: &str) {
        self.bytes16(v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(513);
        w.u32(70_000);
        w.u64(u64::MAX - 1);
        w.bool(true);
        w.string("héllo");
        w.bytes32(&[1, 2, 3]);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 513);
        assert_eq!(r.u32().unwrap(), 70_000);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert!(r.bool().unwrap());
        assert_eq!(r.string(100).unwrap(), "héllo");
        assert_eq!(r.bytes32(10).unwrap(), &[1, 2, 3]);
        r.finish().unwrap();
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            Reader::new(&[0, 5, b'a']).string(100),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0, 5, 1, 2, 3, 4, 5]).string(4),
            Err(DecodeError::TooLong { len: 5, max: 4 })
        );
        assert_eq!(
            Reader::new(&[0, 2, 0xff, 0xfe]).string(4),
            Err(DecodeError::Utf8)
        );
        assert_eq!(Reader::new(&[2]).bool(), Err(DecodeError::BadValue("bool")));
        assert_eq!(Reader::new(&[1, 2]).finish(), Err(DecodeError::Trailing(2)));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).bytes32(1024),
            Err(DecodeError::TooLong {
                len: u32::MAX as usize,
                max: 1024
            })
        );
    }
}
