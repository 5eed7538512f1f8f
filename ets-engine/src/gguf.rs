//! A bounded reader of GGUF headers: every length, count and tensor size in a file is checked
//! against the bytes that actually remain before anything is allocated, so a crafted file is an
//! error naming the field, never an out-of-memory abort of the daemon.
//!
//! Every GGUF file goes through [`GgufHeader::read`] before a third-party reader (candle's
//! `gguf_file::Content::read`, which mistral.rs also uses) sees it: that reader allocates what
//! the header claims (a string length of 2^40 aborted the whole process). Once a header passes
//! here, no claimed size exceeds the file, so those readers allocate at most about the file's
//! own size.
//!
//! Format (GGUF v1–v3, little-endian): magic `GGUF`, version, tensor count, metadata count
//! (u32 in v1, u64 after), metadata entries (key string, value type, value), tensor infos (name,
//! dimension count, dimensions, ggml type, offset), padding to `general.alignment`, tensor data.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Most items of one metadata array (real vocabularies and merge lists stay far below).
const MAX_ARRAY_ITEMS: u64 = 1 << 22;
/// Deepest nesting of metadata arrays.
const MAX_ARRAY_DEPTH: u32 = 2;
/// Longest metadata key or tensor name, in bytes (the GGUF spec's key limit).
const MAX_NAME_BYTES: u64 = 65_535;

/// A metadata value, with arrays summarised (their items are checked, not kept).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Any integer type.
    Int(i128),
    /// `f32` or `f64`.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A UTF-8 string (invalid UTF-8 is replaced).
    Str(String),
    /// An array of `len` items.
    Array {
        /// Its item count.
        len: u64,
    },
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensor {
    /// Dimensions as stored (innermost first).
    pub dims: Vec<u64>,
    /// The ggml type id.
    pub ggml_type: u32,
    /// Offset of its data from the start of the data section.
    pub offset: u64,
}

/// A validated GGUF header.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// The file.
    pub path: PathBuf,
    /// GGUF version (1, 2 or 3).
    pub version: u32,
    /// Metadata by key.
    pub metadata: HashMap<String, GgufValue>,
    /// Tensors by name.
    pub tensors: HashMap<String, GgufTensor>,
}

impl GgufHeader {
    /// Reads and validates the header of the GGUF file at `path` (tensor data is not read, but
    /// every tensor must lie inside the file).
    pub fn read(path: &Path) -> Result<Self, Error> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("reading the size of", path, e))?
            .len();
        Self::read_from(BufReader::new(file), size, path)
    }

    /// [`read`](Self::read) of a file already open (or in memory, `&[u8]`): `size` is its
    /// length in bytes, which every claimed size is checked against, and `path` only names it
    /// in errors. `reader` should be buffered; it is read up to the end of the header.
    pub fn read_from(reader: impl Read, size: u64, path: &Path) -> Result<Self, Error> {
        let mut reader = Reader {
            inner: reader,
            path,
            remaining: size,
            version: 0,
        };
        reader.header(size)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<String, Error> {
        match self.metadata.get("general.architecture") {
            Some(GgufValue::Str(s)) => Ok(s.clone()),
            _ => Err(self.malformed("general.architecture", "missing or not a string")),
        }
    }

    /// An unsigned integer metadata value.
    pub fn uint(&self, key: &str) -> Option<u64> {
        match self.metadata.get(key) {
            Some(GgufValue::Int(v)) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    fn malformed(&self, field: &str, message: &str) -> Error {
        Error::Malformed {
            path: self.path.clone(),
            format: "GGUF",
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// Bytes per block and elements per block of the ggml types candle reads.
fn ggml_block(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (4, 1),     // F32
        1 => (2, 1),     // F16
        2 => (18, 32),   // Q4_0
        3 => (20, 32),   // Q4_1
        6 => (22, 32),   // Q5_0
        7 => (24, 32),   // Q5_1
        8 => (34, 32),   // Q8_0
        9 => (36, 32),   // Q8_1
        10 => (84, 256), // Q2_K
        11 => (110, 256),
        12 => (144, 256),
        13 => (176, 256),
        14 => (210, 256),
        15 => (292, 256),
        24 => (1, 1), // I8
        25 => (2, 1), // I16
        26 => (4, 1), // I32
        27 => (8, 1), // I64
        28 => (8, 1), // F64
        30 => (2, 1), // BF16
        _ => return None,
    })
}

struct Reader<'a, R> {
    inner: R,
    path: &'a Path,
    remaining: u64,
    version: u32,
}

impl<R: Read> Reader<'_, R> {
    fn malformed(&self, field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Malformed {
            path: self.path.to_path_buf(),
            format: "GGUF",
            field: field.into(),
            message: message.into(),
        }
    }

    /// Reads exactly `N` bytes; running out of file is a malformed `field`.
    fn bytes<const N: usize>(&mut self, field: &str) -> Result<[u8; N], Error> {
        if self.remaining < N as u64 {
            return Err(self.malformed(field, "the file ends inside it"));
        }
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| Error::io("reading", self.path, e))?;
        self.remaining -= N as u64;
        Ok(buf)
    }

    fn u32(&mut self, field: &str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.bytes(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.bytes(field)?))
    }

    /// A count or length: u32 in v1, u64 after.
    fn count(&mut self, field: &str) -> Result<u64, Error> {
        if self.version == 1 {
            self.u32(field).map(u64::from)
        } else {
            self.u64(field)
        }
    }

    /// A length-prefixed string of at most `limit` bytes, never longer than what remains.
    fn string(&mut self, field: &str, limit: u64) -> Result<String, Error> {
        let len = self.count(field)?;
        if len > limit {
            return Err(self.malformed(field, format!("length {len} exceeds the limit {limit}")));
        }
        if len > self.remaining {
            return Err(self.malformed(
                field,
                format!(
                    "length {len} exceeds the {} bytes left in the file",
                    self.remaining
                ),
            ));
        }
        let mut buf = Vec::with_capacity(len as usize);
        (&mut self.inner)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading", self.path, e))?;
        if buf.len() as u64 != len {
            return Err(self.malformed(field, "the file ends inside it"));
        }
        self.remaining -= len;
        // Trailing NULs are dropped, as candle's reader drops them: both readers must see the
        // same keys (a `general.alignment\0` of 0 that only candle took for the alignment
        // made it divide by zero).
        while buf.last() == Some(&0) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn header(&mut self, size: u64) -> Result<GgufHeader, Error> {
        if self.bytes::<4>("magic")? != *b"GGUF" {
            return Err(self.malformed("magic", "not a GGUF file (no `GGUF` magic)"));
        }
        let version = self.u32("version")?;
        if !(1..=3).contains(&version) {
            return Err(self.malformed("version", format!("unsupported version {version}")));
        }
        self.version = version;
        let tensor_count = self.count("tensor count")?;
        let metadata_count = self.count("metadata count")?;
        // Each entry takes at least a length and a type: a count beyond that cannot be real.
        if metadata_count > self.remaining / 12 {
            return Err(self.malformed(
                "metadata count",
                format!("{metadata_count} entries cannot fit in a {size}-byte file"),
            ));
        }
        if tensor_count > self.remaining / 24 {
            return Err(self.malformed(
                "tensor count",
                format!("{tensor_count} tensors cannot fit in a {size}-byte file"),
            ));
        }
        let mut metadata = HashMap::new();
        for i in 0..metadata_count {
            let key = self.string(&format!("metadata key #{i}"), MAX_NAME_BYTES)?;
            let value_type = self.u32(&key)?;
            let value = self.value(&key, value_type, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = HashMap::new();
        for i in 0..tensor_count {
            let name = self.string(&format!("tensor name #{i}"), MAX_NAME_BYTES)?;
            let n_dims = self.u32(&format!("tensor {name} dimension count"))?;
            if n_dims > MAX_DIMS {
                return Err(self.malformed(
                    format!("tensor {name} dimension count"),
                    format!("{n_dims} dimensions (at most {MAX_DIMS})"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(self.count(&format!("tensor {name} dimensions"))?);
            }
            let ggml_type = self.u32(&format!("tensor {name} type"))?;
            let offset = self.u64(&format!("tensor {name} offset"))?;
            tensors.insert(
                name,
                GgufTensor {
                    dims,
                    ggml_type,
                    offset,
                },
            );
        }
        let header_end = size - self.remaining;
        let alignment = match metadata.get("general.alignment") {
            Some(GgufValue::Int(a)) if *a > 0 && *a <= 1 << 20 => *a as u64,
            Some(_) => {
                return Err(self.malformed("general.alignment", "not a positive integer ≤ 2^20"))
            }
            None => 32,
        };
        let data_start = header_end.div_ceil(alignment) * alignment;
        let data_bytes = size.saturating_sub(data_start);
        for (name, t) in &tensors {
            self.check_tensor(name, t, data_bytes)?;
        }
        Ok(GgufHeader {
            path: self.path.to_path_buf(),
            version,
            metadata,
            tensors,
        })
    }

    /// A tensor's elements and bytes must be representable and lie inside the data section.
    fn check_tensor(&self, name: &str, t: &GgufTensor, data_bytes: u64) -> Result<(), Error> {
        let field = format!("tensor {name}");
        // The product of the non-zero dimensions must fit whatever the order: candle multiplies
        // them innermost last, so a leading zero must not hide an overflow of the rest.
        let nonzero = t
            .dims
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .ok_or_else(|| self.malformed(&field, "its element count overflows"))?;
        let elements = if t.dims.contains(&0) { 0 } else { nonzero };
        let bytes = match ggml_block(t.ggml_type) {
            Some((block_bytes, block_elements)) => {
                if elements % block_elements != 0 {
                    return Err(self.malformed(
                        &field,
                        format!(
                            "{elements} elements are not whole blocks of {block_elements} \
                             (type {})",
                            t.ggml_type
                        ),
                    ));
                }
                (elements / block_elements)
                    .checked_mul(block_bytes)
                    .ok_or_else(|| self.malformed(&field, "its byte size overflows"))?
            }
            // A type this reader does not size (newer i-quants): at least 1 bit per element.
            None => elements.div_ceil(8),
        };
        let end = t
            .offset
            .checked_add(bytes)
            .ok_or_else(|| self.malformed(&field, "its offset overflows"))?;
        if end > data_bytes {
            return Err(self.malformed(
                &field,
                format!(
                    "its data ({bytes} bytes at offset {}) runs past the {data_bytes}-byte data \
                     section",
                    t.offset
                ),
            ));
        }
        Ok(())
    }

    fn value(&mut self, key: &str, value_type: u32, depth: u32) -> Result<GgufValue, Error> {
        Ok(match value_type {
            0 => GgufValue::Int(self.bytes::<1>(key)?[0].into()),
            1 => GgufValue::Int((self.bytes::<1>(key)?[0] as i8).into()),
            2 => GgufValue::Int(u16::from_le_bytes(self.bytes(key)?).into()),
            3 => GgufValue::Int(i16::from_le_bytes(self.bytes(key)?).into()),
            4 => GgufValue::Int(u32::from_le_bytes(self.bytes(key)?).into()),
            5 => GgufValue::Int(i32::from_le_bytes(self.bytes(key)?).into()),
            6 => GgufValue::Float(f32::from_le_bytes(self.bytes(key)?).into()),
            7 => match self.bytes::<1>(key)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.malformed(key, format!("bool value {b}"))),
            },
            8 => GgufValue::Str(self.string(key, u64::MAX)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(key, "arrays nested too deep"));
                }
                let item_type = self.u32(key)?;
                let len = self.count(key)?;
                let min_item = match item_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(self.malformed(key, format!("unknown array item type {t}"))),
                };
                if len > MAX_ARRAY_ITEMS || len > self.remaining / min_item {
                    return Err(self.malformed(
                        key,
                        format!(
                            "array of {len} items cannot fit (at most {MAX_ARRAY_ITEMS}, and \
                             {} bytes remain)",
                            self.remaining
                        ),
                    ));
                }
                for _ in 0..len {
                    self.value(key, item_type, depth + 1)?;
                }
                GgufValue::Array { len }
            }
            10 => GgufValue::Int(u64::from_le_bytes(self.bytes(key)?).into()),
            11 => GgufValue::Int(i64::from_le_bytes(self.bytes(key)?).into()),
            12 => GgufValue::Float(f64::from_le_bytes(self.bytes(key)?)),
            t => return Err(self.malformed(key, format!("unknown value type {t}"))),
        })
    }
}

/// What a model load does with untrusted GGUF bytes, as one call: the body of the fuzz target
/// `fuzz/fuzz_targets/gguf_header.rs` and of the corpus replay test. [`GgufHeader::read_from`]
/// first; only when it accepts, candle's `gguf_file::Content::read` (which may still refuse the
/// file, but must not panic or allocate past its size), then the byte size of every tensor
/// as candle's tensor reader computes it.
///
/// # Panics
///
/// Only on a bug of the header check: candle saw other keys or tensors than this reader, or a
/// tensor it would allocate more bytes for than the file has.
#[doc(hidden)]
pub fn screen_bytes(data: &[u8]) -> Result<GgufHeader, Error> {
    let header = GgufHeader::read_from(data, data.len() as u64, Path::new("<bytes>"))?;
    let mut cursor = std::io::Cursor::new(data);
    let Ok(content) = candle_core::quantized::gguf_file::Content::read(&mut cursor) else {
        return Ok(header);
    };
    let same_keys = content.metadata.len() == header.metadata.len()
        && content
            .metadata
            .keys()
            .all(|k| header.metadata.contains_key(k));
    assert!(
        same_keys,
        "candle read other metadata keys than the header check"
    );
    let same_tensors = content.tensor_infos.len() == header.tensors.len()
        && content
            .tensor_infos
            .keys()
            .all(|k| header.tensors.contains_key(k));
    assert!(
        same_tensors,
        "candle read other tensors than the header check"
    );
    for (name, info) in &content.tensor_infos {
        // As `TensorInfo::read` sizes the buffer it allocates.
        let elements = info.shape.elem_count();
        let bytes = elements / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        assert!(
            bytes <= data.len(),
            "tensor {name}: candle would allocate {bytes} bytes for a {}-byte file",
            data.len()
        );
    }
    Ok(header)
}

#[cfg(test)]
#[path = "gguf_tests.rs"]
mod tests;
