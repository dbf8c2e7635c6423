//! Splits a byte stream into lines without ever holding more than one capped line.

/// Longest line kept whole; longer lines are split into pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes, returning the complete lines (without the newline).
    /// `cut` chooses where to split an over-long line (to keep secrets whole).
    pub fn push(&mut self, mut data: &[u8], cut: &dyn Fn(&[u8]) -> usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            self.buf.extend_from_slice(&data[..i]);
            self.split_long(&mut out, cut);
            let mut line = std::mem::take(&mut self.buf);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push(line);
            data = &data[i + 1..];
        }
        self.buf.extend_from_slice(data);
        self.split_long(&mut out, cut);
        out
    }

    fn split_long(&mut self, out: &mut Vec<Vec<u8>>, cut: &dyn Fn(&[u8]) -> usize) {
        while self.buf.len() > MAX_LINE {
            let mut at = cut(&self.buf[..MAX_LINE]);
            if at == 0 {
                at = MAX_LINE;
            }
            let rest = self.buf.split_off(at);
            out.push(std::mem::replace(&mut self.buf, rest));
        }
    }

    /// The last line if the stream did not end with a newline.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.buf.is_empty() { None } else { Some(std::mem::take(&mut self.buf)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_caps_length() {
        let mut s = LineSplitter::default();
        let all = |b: &[u8]| b.len();
        assert_eq!(s.push(b"a\nb", &all), vec![b"a".to_vec()]);
        assert_eq!(s.push(b"c\r\n", &all), vec![b"bc".to_vec()]);
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        let lines = s.push(&big, &all);
        assert_eq!(lines.len(), 2);
        assert_eq!(s.finish().map(|l| l.len()), Some(10));
    }
}
