//! The framing of an attached one-off dyno (`ouro run`): the CLI and the runner each open an
//! HTTP upgrade (`Upgrade: ouro-attach`) to the API, which pairs the two connections and copies
//! bytes between them untouched. Both ends speak these frames: one kind byte, the payload's
//! length as 4 bytes big-endian, the payload.
//!
//! CLI → dyno: [`STDIN`] bytes, [`STDIN_EOF`] (empty) when local input ends, [`RESIZE`]
//! (columns, rows: 2 bytes each, big-endian) when the terminal's size changes.
//! Dyno → CLI: [`STDOUT`] and [`STDERR`] bytes (a TTY dyno sends all its output as `STDOUT`),
//! then [`EXIT`] (the exit status, 4 bytes big-endian, signed) as the last frame; or [`ERROR`]
//! (a UTF-8 reason: the dyno could not start, the other side went away) instead.

/// The `Upgrade` token of attach connections.
pub const UPGRADE: &str = "ouro-attach";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;
pub const STDIN_EOF: u8 = 5;
pub const ERROR: u8 = 6;

/// Largest payload a frame may carry; a reader refuses longer ones (a broken or hostile peer).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// One frame, ready to write.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn exit_frame(status: i32) -> Vec<u8> {
    frame(EXIT, &status.to_be_bytes())
}

pub fn resize_frame(columns: u16, rows: u16) -> Vec<u8> {
    let mut payload = columns.to_be_bytes().to_vec();
    payload.extend_from_slice(&rows.to_be_bytes());
    frame(RESIZE, &payload)
}

/// The exit status an [`EXIT`] frame's payload carries.
pub fn exit_status(payload: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(payload.try_into().ok()?))
}

/// The (columns, rows) a [`RESIZE`] frame's payload carries.
pub fn size(payload: &[u8]) -> Option<(u16, u16)> {
    let bytes: [u8; 4] = payload.try_into().ok()?;
    Some((u16::from_be_bytes([bytes[0], bytes[1]]), u16::from_be_bytes([bytes[2], bytes[3]])))
}

/// Cuts frames out of a byte stream read in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` until one has arrived; `Err` for a payload longer than
    /// [`MAX_PAYLOAD`] (the connection should then be closed).
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([self.buffer[1], self.buffer[2], self.buffer[3], self.buffer[4]]) as usize;
        if length > MAX_PAYLOAD {
            return Err(format!("an attach frame of {length} bytes is longer than {MAX_PAYLOAD}"));
        }
        if self.buffer.len() < 5 + length {
            return Ok(None);
        }
        let kind = self.buffer[0];
        let payload = self.buffer[5..5 + length].to_vec();
        self.buffer.drain(..5 + length);
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_being_read_in_any_pieces() {
        let mut stream = frame(STDOUT, b"hello\n");
        stream.extend(exit_frame(-3));
        stream.extend(resize_frame(120, 40));
        stream.extend(frame(STDIN_EOF, b""));
        for piece in [1, 2, 5, 7, stream.len()] {
            let mut decoder = Decoder::default();
            let mut frames = Vec::new();
            for chunk in stream.chunks(piece) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames.len(), 4, "pieces of {piece}");
            assert_eq!(frames[0], (STDOUT, b"hello\n".to_vec()));
            assert_eq!((frames[1].0, exit_status(&frames[1].1)), (EXIT, Some(-3)));
            assert_eq!((frames[2].0, size(&frames[2].1)), (RESIZE, Some((120, 40))));
            assert_eq!(frames[3], (STDIN_EOF, Vec::new()));
        }
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let mut decoder = Decoder::default();
        decoder.push(&[STDOUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(decoder.next_frame().is_err());
        assert_eq!(exit_status(b"abc"), None);
    }
}
