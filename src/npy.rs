//! Reading and writing numpy `.npy` files.
//!
//! Reads format versions 1.0, 2.0 and 3.0; writes version 1.0 (2.0 only when the
//! header does not fit 1.0's 64 KiB, which takes a rank in the thousands).
//!
//! | numpy dtype | read as | written from |
//! |---|---|---|
//! | `f4` | f32 | f32, and bf16 (widened to f32: numpy has no bf16) |
//! | `f2` | f16 | f16 |
//! | `f8` | f32 (rounded to nearest: snipjit has no f64) | - |
//! | `i1` `u1` `i4` `i8` | i8 u8 i32 i64 | i8 u8 i32 i64 |
//! | `b1` | bool (any nonzero byte is true) | bool |
//!
//! Big-endian data (`>f4`...) is byte-swapped and Fortran-ordered data
//! (`fortran_order: True`) is transposed to row-major on read. Any other dtype
//! (complex, structured, strings, objects, u2/u4/u8/i2...) is refused with an error
//! naming it. The reader never panics on malformed input: a garbage header, a
//! truncated file, a shape whose element count overflows, or a data section whose
//! length is not what the header says are all errors.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use half::f16;
use snipjit_ir::{DType, Tensor, TensorData};

/// The magic string that starts every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Largest header accepted on read. numpy itself refuses headers above 10 000 bytes
/// by default; we allow more (a rank-64 shape with 20-digit dims still fits) but
/// bound it so a hostile length cannot make us scan gigabytes as text.
const MAX_HEADER_LEN: usize = 1 << 20;

/// Errors of `.npy` reading and writing.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read.
    #[error("cannot read '{}': {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file could not be written.
    #[error("cannot write '{}': {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bytes are not a `.npy` file this reader supports; `origin` is the file
    /// name, or `<bytes>` for [`read_bytes`].
    #[error("{origin}: invalid .npy file: {reason}")]
    Format { origin: String, reason: String },
}

/// Reads a `.npy` file into a tensor (see the module docs for the dtype mapping).
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|reason| NpyError::Format {
        origin: path.display().to_string(),
        reason,
    })
}

/// Reads a `.npy` file held in memory.
pub fn read_bytes(bytes: &[u8]) -> Result<Tensor, NpyError> {
    parse(bytes).map_err(|reason| NpyError::Format {
        origin: "<bytes>".into(),
        reason,
    })
}

/// Writes `tensor` to `path` as a `.npy` file (bf16 is written as f32).
///
/// The tensor's data length must match its shape (a [`Tensor`] built by
/// [`Tensor::new`] always does).
pub fn write(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    let bytes = to_bytes(tensor).map_err(|reason| NpyError::Format {
        origin: path.display().to_string(),
        reason,
    })?;
    let write_err = |source| NpyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(path).map_err(write_err)?;
    file.write_all(&bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

/// Encodes `tensor` as the bytes of a `.npy` file (bf16 is written as f32).
///
/// Fails only if the tensor's data length does not match its shape.
pub fn to_bytes(tensor: &Tensor) -> Result<Vec<u8>, String> {
    let numel = checked_numel(&tensor.shape)?;
    if numel != tensor.data.len() {
        return Err(format!(
            "tensor of shape {:?} holds {} elements, expected {numel}",
            tensor.shape,
            tensor.data.len()
        ));
    }
    let descr = match tensor.dtype() {
        DType::F32 | DType::BF16 => "<f4",
        DType::F16 => "<f2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
    };
    let dims: Vec<String> = tensor.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // The data starts 64-byte aligned; the header ends with '\n'.
    let (version, prefix) = if header.len() + 1 + 10 <= usize::from(u16::MAX) + 10 {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.extend(std::iter::repeat_n(' ', total - prefix - header.len() - 1));
    header.push('\n');

    let mut out = Vec::with_capacity(total + numel * tensor.dtype().size().max(4));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        let len = u16::try_from(header.len()).expect("version 1 chosen only when it fits");
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        let len = u32::try_from(header.len())
            .map_err(|_| format!("a rank-{} shape does not fit a .npy header", dims.len()))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    match &tensor.data {
        TensorData::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::BF16(v) => v.iter().for_each(|x| out.extend(x.to_f32().to_le_bytes())),
        TensorData::F16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::I8(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::I32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Bool(v) => v.iter().for_each(|&x| out.push(u8::from(x))),
    }
    Ok(out)
}

fn checked_numel(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("the element count of shape {shape:?} overflows"))
}

/// Byte order of the stored elements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endian {
    Little,
    Big,
}

/// The element type as stored, before conversion.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stored {
    F16,
    F32,
    F64,
    I8,
    U8,
    I32,
    I64,
    Bool,
}

impl Stored {
    fn size(self) -> usize {
        match self {
            Stored::I8 | Stored::U8 | Stored::Bool => 1,
            Stored::F16 => 2,
            Stored::F32 | Stored::I32 => 4,
            Stored::F64 | Stored::I64 => 8,
        }
    }
}

/// The parsed header dictionary.
#[derive(Debug)]
struct Header {
    stored: Stored,
    endian: Endian,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn parse(bytes: &[u8]) -> Result<Tensor, String> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (it does not start with \\x93NUMPY)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_size, utf8) = match major {
        1 => (2, false),
        2 => (4, false),
        3 => (4, true),
        _ => return Err(format!("unsupported format version {major}.{minor}")),
    };
    let header_start = 8 + len_size;
    let Some(len_bytes) = bytes.get(8..header_start) else {
        return Err("truncated before the header length".into());
    };
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if header_len > MAX_HEADER_LEN {
        return Err(format!(
            "header length {header_len} exceeds the limit of {MAX_HEADER_LEN} bytes"
        ));
    }
    let data_start = header_start + header_len;
    let Some(raw_header) = bytes.get(header_start..data_start) else {
        return Err(format!(
            "truncated header: it declares {header_len} bytes, the file has {}",
            bytes.len() - header_start
        ));
    };
    let text: String = if utf8 {
        std::str::from_utf8(raw_header)
            .map_err(|_| "header is not valid UTF-8".to_string())?
            .to_string()
    } else {
        // Versions 1 and 2 store the header as latin-1.
        raw_header.iter().map(|&b| char::from(b)).collect()
    };
    let header = parse_header(&text)?;
    let numel = checked_numel(&header.shape)?;
    let data = &bytes[data_start..];
    let want = numel
        .checked_mul(header.stored.size())
        .ok_or_else(|| format!("the byte size of shape {:?} overflows", header.shape))?;
    if data.len() != want {
        let what = if data.len() < want {
            "truncated data"
        } else {
            "data length mismatch"
        };
        return Err(format!(
            "{what}: shape {:?} needs {want} bytes, the file holds {}",
            header.shape,
            data.len()
        ));
    }
    let mut tensor_data = decode(data, header.stored, header.endian);
    if header.fortran_order && header.shape.len() > 1 {
        tensor_data = fortran_to_c(tensor_data, &header.shape);
    }
    Tensor::new(header.shape, tensor_data).map_err(|e| e.to_string())
}

/// Decodes the element bytes (their length is a multiple of the element size).
fn decode(data: &[u8], stored: Stored, endian: Endian) -> TensorData {
    fn words<const N: usize>(data: &[u8], endian: Endian) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(move |c| {
            let mut w: [u8; N] = c.try_into().expect("chunks_exact yields N bytes");
            if endian == Endian::Big {
                w.reverse();
            }
            w
        })
    }
    match stored {
        Stored::F16 => TensorData::F16(words::<2>(data, endian).map(f16::from_le_bytes).collect()),
        Stored::F32 => TensorData::F32(words::<4>(data, endian).map(f32::from_le_bytes).collect()),
        Stored::F64 => TensorData::F32(
            words::<8>(data, endian)
                .map(|w| f64::from_le_bytes(w) as f32)
                .collect(),
        ),
        Stored::I8 => TensorData::I8(data.iter().map(|&b| b as i8).collect()),
        Stored::U8 => TensorData::U8(data.to_vec()),
        Stored::I32 => TensorData::I32(words::<4>(data, endian).map(i32::from_le_bytes).collect()),
        Stored::I64 => TensorData::I64(words::<8>(data, endian).map(i64::from_le_bytes).collect()),
        Stored::Bool => TensorData::Bool(data.iter().map(|&b| b != 0).collect()),
    }
}

/// Reorders column-major elements of `shape` into row-major order.
fn fortran_to_c(data: TensorData, shape: &[usize]) -> TensorData {
    let numel = data.len();
    // Column-major strides, in elements.
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    // For each row-major position, the column-major source index.
    let mut src = Vec::with_capacity(numel);
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..numel {
        src.push(offset);
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            offset += strides[k];
            if index[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            index[k] = 0;
        }
    }
    fn gather<T: Copy>(v: &[T], src: &[usize]) -> Vec<T> {
        src.iter().map(|&i| v[i]).collect()
    }
    match &data {
        TensorData::F32(v) => TensorData::F32(gather(v, &src)),
        TensorData::BF16(v) => TensorData::BF16(gather(v, &src)),
        TensorData::F16(v) => TensorData::F16(gather(v, &src)),
        TensorData::I8(v) => TensorData::I8(gather(v, &src)),
        TensorData::U8(v) => TensorData::U8(gather(v, &src)),
        TensorData::I32(v) => TensorData::I32(gather(v, &src)),
        TensorData::I64(v) => TensorData::I64(gather(v, &src)),
        TensorData::Bool(v) => TensorData::Bool(gather(v, &src)),
    }
}

/// A value of the Python literal subset that `.npy` headers use.
#[derive(Debug)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(u128),
    Tuple(Vec<Literal>),
    /// Lists appear as structured dtype descriptions, which are refused.
    List,
}

/// Parses the header dictionary: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(text: &str) -> Result<Header, String> {
    let mut p = LiteralParser {
        s: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = match p.value()? {
            Literal::Str(s) => s,
            other => return Err(format!("header key is not a string: {other:?}")),
        };
        p.skip_ws();
        p.expect(b':')?;
        let value = p.value()?;
        match key.as_str() {
            "descr" => descr = Some(value),
            "fortran_order" => fortran = Some(value),
            "shape" => shape = Some(value),
            _ => return Err(format!("unexpected header key '{key}'")),
        }
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        p.expect(b',')?;
    }
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err("unexpected text after the header dictionary".into());
    }

    let (stored, endian) = match descr {
        Some(Literal::Str(s)) => parse_descr(&s)?,
        Some(Literal::List) => {
            return Err("structured dtypes are not supported".into());
        }
        Some(other) => return Err(format!("'descr' is not a dtype string: {other:?}")),
        None => return Err("header has no 'descr'".into()),
    };
    let fortran_order = match fortran {
        Some(Literal::Bool(b)) => b,
        Some(other) => return Err(format!("'fortran_order' is not True/False: {other:?}")),
        None => return Err("header has no 'fortran_order'".into()),
    };
    let shape = match shape {
        Some(Literal::Tuple(items)) => items
            .into_iter()
            .map(|d| match d {
                Literal::Int(n) => usize::try_from(n)
                    .map_err(|_| format!("dimension {n} does not fit in memory addresses")),
                other => Err(format!("shape entry is not an integer: {other:?}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(format!("'shape' is not a tuple: {other:?}")),
        None => return Err("header has no 'shape'".into()),
    };
    Ok(Header {
        stored,
        endian,
        fortran_order,
        shape,
    })
}

fn parse_descr(s: &str) -> Result<(Stored, Endian), String> {
    let unsupported = || {
        format!(
            "unsupported dtype '{s}' (supported: f2, f4, f8, i1, u1, i4, i8, b1; \
             little- or big-endian)"
        )
    };
    let mut chars = s.chars();
    let (order, code) = match chars.next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.as_str()),
        _ => ('=', s),
    };
    let stored = match code {
        "f2" | "e" => Stored::F16,
        "f4" | "f" => Stored::F32,
        "f8" | "d" => Stored::F64,
        "i1" | "b" => Stored::I8,
        "u1" | "B" => Stored::U8,
        "i4" => Stored::I32,
        "i8" => Stored::I64,
        "b1" | "?" => Stored::Bool,
        _ => return Err(unsupported()),
    };
    let native = if cfg!(target_endian = "big") {
        Endian::Big
    } else {
        Endian::Little
    };
    let endian = match order {
        '<' => Endian::Little,
        '>' => Endian::Big,
        _ if stored.size() == 1 => Endian::Little,
        // '|' ("not applicable") on a multi-byte type is malformed; '=' is native.
        '|' => return Err(format!("dtype '{s}' has no byte order")),
        _ => native,
    };
    Ok((stored, endian))
}

/// A recursive-descent parser over the Python literal subset of `.npy` headers.
struct LiteralParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl LiteralParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else if self.pos >= self.s.len() {
            Err(format!(
                "malformed header: it ends early (expected '{}')",
                char::from(c)
            ))
        } else {
            Err(format!(
                "malformed header: expected '{}' at byte {}",
                char::from(c),
                self.pos
            ))
        }
    }

    fn value(&mut self) -> Result<Literal, String> {
        self.skip_ws();
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != q) {
                    self.pos += 1;
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.expect(q)?;
                Ok(Literal::Str(text))
            }
            Some(b'(' | b'[') => {
                let list = self.peek() == Some(b'[');
                let close = if list { b']' } else { b')' };
                // A nesting bound keeps hostile headers from exhausting the stack.
                if self.depth >= 8 {
                    return Err("malformed header: nested too deeply".into());
                }
                self.depth += 1;
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.eat(close) {
                        break;
                    }
                    items.push(self.value()?);
                    self.skip_ws();
                    if self.eat(close) {
                        break;
                    }
                    self.expect(b',')?;
                }
                self.depth -= 1;
                Ok(if list {
                    Literal::List
                } else {
                    Literal::Tuple(items)
                })
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits =
                    std::str::from_utf8(&self.s[start..self.pos]).expect("ASCII digits are UTF-8");
                let n = digits
                    .parse::<u128>()
                    .map_err(|_| format!("integer {digits} is too large"))?;
                // Python 2 wrote long integers as `3L`.
                self.eat(b'L');
                Ok(Literal::Int(n))
            }
            Some(b'-') => Err("malformed header: negative number".into()),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Literal::Bool(true)),
                    b"False" => Ok(Literal::Bool(false)),
                    word => Err(format!(
                        "malformed header: unexpected word '{}'",
                        String::from_utf8_lossy(word)
                    )),
                }
            }
            Some(c) => Err(format!(
                "malformed header: unexpected character '{}' at byte {}",
                char::from(c).escape_default(),
                self.pos
            )),
            None => Err("malformed header: it ends early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use half::bf16;

    use super::*;

    /// Builds a `.npy` file from a version, a header text and raw data.
    fn npy(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[major, 0]);
        if major == 1 {
            v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn err(bytes: &[u8]) -> String {
        match read_bytes(bytes) {
            Ok(t) => panic!("expected an error, got {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn numpy_written_file_is_read() {
        // Bytes of `np.save(f, np.arange(6, dtype='<f4').reshape(2, 3))`, numpy 1.26.
        let mut bytes = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(b' ', 128 - 10 - header.len() - 1));
        bytes.push(b'\n');
        assert_eq!(bytes.len(), 128);
        for x in 0..6 {
            bytes.extend((x as f32).to_le_bytes());
        }
        let t = read_bytes(&bytes).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.as_f32().unwrap(), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn writer_output_matches_numpy_layout() {
        let t = Tensor::from_f32(&[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let bytes = to_bytes(&t).unwrap();
        // Same layout numpy 1.26 produces: v1.0, header padded to 128 bytes total.
        assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
        let header = std::str::from_utf8(&bytes[10..128]).unwrap();
        assert_eq!(
            header.trim_end(),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        );
        assert!(header.ends_with('\n'));
        assert_eq!(bytes.len(), 128 + 24);
        assert_eq!(&bytes[128 + 4..128 + 8], &1.0f32.to_le_bytes());
    }

    #[test]
    fn round_trip_every_dtype_and_shape() {
        let cases = vec![
            Tensor::new(vec![3], TensorData::F32(vec![1.5, -2.0, f32::INFINITY])).unwrap(),
            Tensor::new(vec![2, 2], TensorData::F16(vec![f16::from_f32(0.5); 4])).unwrap(),
            Tensor::new(vec![2], TensorData::I8(vec![-128, 127])).unwrap(),
            Tensor::new(vec![1, 2], TensorData::U8(vec![0, 255])).unwrap(),
            Tensor::new(vec![2], TensorData::I32(vec![i32::MIN, 7])).unwrap(),
            Tensor::new(vec![2], TensorData::I64(vec![i64::MAX, -1])).unwrap(),
            Tensor::new(vec![3], TensorData::Bool(vec![true, false, true])).unwrap(),
            // 0-d and zero-size arrays.
            Tensor::scalar_f32(42.0),
            Tensor::new(vec![0, 5], TensorData::F32(vec![])).unwrap(),
            Tensor::new(vec![4, 0], TensorData::I64(vec![])).unwrap(),
        ];
        for t in cases {
            let bytes = to_bytes(&t).unwrap();
            assert_eq!((bytes.len() - t.numel() * t.dtype().size()) % 64, 0);
            assert_eq!(read_bytes(&bytes).unwrap(), t, "round trip of {t:?}");
        }
    }

    #[test]
    fn bf16_is_written_as_f32() {
        let v = vec![bf16::from_f32(1.0), bf16::from_f32(-3.5)];
        let t = Tensor::new(vec![2], TensorData::BF16(v)).unwrap();
        let back = read_bytes(&to_bytes(&t).unwrap()).unwrap();
        assert_eq!(back, Tensor::from_f32(&[2], vec![1.0, -3.5]).unwrap());
    }

    #[test]
    fn header_shapes_print_like_python() {
        let scalar = to_bytes(&Tensor::scalar_f32(1.0)).unwrap();
        assert!(String::from_utf8_lossy(&scalar).contains("'shape': (), }"));
        let vector = to_bytes(&Tensor::from_f32(&[3], vec![0.0; 3]).unwrap()).unwrap();
        assert!(String::from_utf8_lossy(&vector).contains("'shape': (3,), }"));
    }

    #[test]
    fn versions_two_and_three_are_read() {
        let data: Vec<u8> = [1i32, -2].iter().flat_map(|x| x.to_le_bytes()).collect();
        let h = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,)}\n";
        for major in [2, 3] {
            let t = read_bytes(&npy(major, h, &data)).unwrap();
            assert_eq!(t.data, TensorData::I32(vec![1, -2]));
        }
    }

    #[test]
    fn f64_is_converted_to_f32() {
        let data: Vec<u8> = [0.1f64, 1e300]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        let t = read_bytes(&npy(1, h, &data)).unwrap();
        assert_eq!(t.as_f32().unwrap(), &[0.1f32, f32::INFINITY]);
    }

    #[test]
    fn big_endian_is_byte_swapped() {
        let data: Vec<u8> = [1.25f32, -8.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let h = "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }";
        let t = read_bytes(&npy(1, h, &data)).unwrap();
        assert_eq!(t.as_f32().unwrap(), &[1.25, -8.0]);
        let data: Vec<u8> = [300i64].iter().flat_map(|x| x.to_be_bytes()).collect();
        let h = "{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }";
        assert_eq!(
            read_bytes(&npy(1, h, &data)).unwrap().data,
            TensorData::I64(vec![300])
        );
    }

    #[test]
    fn fortran_order_is_transposed() {
        // The 2x3 matrix [[0, 1, 2], [3, 4, 5]] stored column-major: 0 3 1 4 2 5.
        let data: Vec<u8> = [0i32, 3, 1, 4, 2, 5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let h = "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }";
        let t = read_bytes(&npy(1, h, &data)).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, TensorData::I32(vec![0, 1, 2, 3, 4, 5]));

        // 2x2x2, element value = 100 i + 10 j + k, stored column-major.
        let mut col_major = Vec::new();
        for k in 0..2 {
            for j in 0..2 {
                for i in 0..2 {
                    col_major.push(100 * i + 10 * j + k);
                }
            }
        }
        let data: Vec<u8> = col_major
            .iter()
            .flat_map(|x: &i64| x.to_le_bytes())
            .collect();
        let h = "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 2, 2), }";
        let t = read_bytes(&npy(1, h, &data)).unwrap();
        assert_eq!(
            t.data,
            TensorData::I64(vec![0, 1, 10, 11, 100, 101, 110, 111])
        );
    }

    #[test]
    fn lenient_header_spellings() {
        let data = 7i32.to_le_bytes();
        for h in [
            "{\"descr\":\"<i4\",\"fortran_order\":False,\"shape\":(1,)}",
            "  { 'shape' : ( 1 , ) , 'descr' : '<i4' , 'fortran_order' : False }  \n",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (1L,), }",
        ] {
            let t = read_bytes(&npy(1, h, &data)).unwrap();
            assert_eq!(t.data, TensorData::I32(vec![7]), "header {h}");
        }
    }

    #[test]
    fn hostile_inputs_are_errors() {
        let ok_h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        let two = [0u8; 8];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "not a .npy file"),
            (b"PK\x03\x04 zip file".to_vec(), "not a .npy file"),
            (b"\x93NUMPY".to_vec(), "not a .npy file"),
            (
                b"\x93NUMPY\x01\x00\x10".to_vec(),
                "truncated before the header length",
            ),
            (
                b"\x93NUMPY\x09\x00\x10\x00".to_vec(),
                "unsupported format version 9.0",
            ),
            (npy(1, ok_h, &two)[..20].to_vec(), "truncated header"),
            (npy(1, ok_h, &two[..7]), "truncated data"),
            (npy(1, ok_h, &[0u8; 12]), "data length mismatch"),
            (npy(1, "", &two), "ends early"),
            (npy(1, "{", &two), "ends early"),
            (npy(1, "{'descr': '<f4'", &two), "expected ','"),
            (npy(1, "{'descr' '<f4'}", &two), "expected ':'"),
            (
                npy(1, "{'descr': '<f4', 'fortran_order': False}", &two),
                "no 'shape'",
            ),
            (
                npy(1, "{'shape': (2,), 'fortran_order': False}", &two),
                "no 'descr'",
            ),
            (
                npy(1, "{'descr': '<f4', 'shape': (2,)}", &two),
                "no 'fortran_order'",
            ),
            (
                npy(
                    1,
                    "{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}",
                    &two,
                ),
                "unsupported dtype '<c8'",
            ),
            (
                npy(
                    1,
                    "{'descr': '<U3', 'fortran_order': False, 'shape': (1,)}",
                    &two,
                ),
                "unsupported dtype",
            ),
            (
                npy(
                    1,
                    "{'descr': '|O', 'fortran_order': False, 'shape': (1,)}",
                    &two,
                ),
                "unsupported dtype",
            ),
            (
                npy(
                    1,
                    "{'descr': '|f4', 'fortran_order': False, 'shape': (2,)}",
                    &two,
                ),
                "no byte order",
            ),
            (
                npy(
                    1,
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
                    &two,
                ),
                "structured",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': 1, 'shape': (2,)}",
                    &two,
                ),
                "fortran_order",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': 2}",
                    &two,
                ),
                "not a tuple",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
                    &two,
                ),
                "negative",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': ('a',)}",
                    &two,
                ),
                "not an integer",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                    &two,
                ),
                "unexpected header key",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk",
                    &two,
                ),
                "after the header",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
                    &two,
                ),
                "unexpected word",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((2,),),),),),),),),),)}",
                    &two,
                ),
                "nested too deeply",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}",
                    &two,
                ),
                "too large",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (340282366920938463463374607431768211455,)}",
                    &two,
                ),
                "does not fit",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2)}",
                    &two,
                ),
                "overflows",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,)}",
                    &two,
                ),
                "overflows",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,)}",
                    &two,
                ),
                "truncated data",
            ),
            (
                npy(3, "{'descr': '\u{0}\u{ff}", &two)[..12].to_vec(),
                "truncated header",
            ),
        ];
        for (bytes, want) in cases {
            let msg = err(&bytes);
            assert!(msg.contains(want), "error {msg:?} should contain {want:?}");
            assert!(msg.starts_with("<bytes>: invalid .npy file: "), "{msg}");
        }
        // Huge declared header lengths are refused before anything is scanned.
        let mut huge = b"\x93NUMPY\x02\x00".to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        assert!(err(&huge).contains("exceeds the limit"));
        // Version 3 headers must be UTF-8.
        let mut bad = b"\x93NUMPY\x03\x00\x02\x00\x00\x00".to_vec();
        bad.extend([0xff, 0xfe]);
        assert!(err(&bad).contains("not valid UTF-8"));
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_an_error() {
        let t = Tensor::from_f32(&[2, 3], vec![1.0; 6]).unwrap();
        let bytes = to_bytes(&t).unwrap();
        for n in 0..bytes.len() {
            assert!(read_bytes(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn corrupting_any_header_byte_never_panics() {
        let t = Tensor::from_f32(&[2, 3], vec![1.0; 6]).unwrap();
        let bytes = to_bytes(&t).unwrap();
        for i in 0..128 {
            for v in [0u8, b'(', b')', b'\'', b'9', b'{', b'}', b',', 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = read_bytes(&b);
            }
        }
    }

    #[test]
    fn inconsistent_tensor_is_not_written() {
        let t = Tensor {
            shape: vec![3],
            data: TensorData::F32(vec![1.0]),
        };
        assert!(
            to_bytes(&t)
                .unwrap_err()
                .contains("holds 1 elements, expected 3")
        );
    }

    #[test]
    fn file_round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("snipjit-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.npy");
        let t = Tensor::new(vec![2], TensorData::I64(vec![5, -5])).unwrap();
        write(&path, &t).unwrap();
        assert_eq!(read(&path).unwrap(), t);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.starts_with("cannot read '") && e.contains("t.npy"), "{e}");
    }
}
