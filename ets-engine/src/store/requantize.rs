//! GGUF re-quantization: Q4_1 tensors become Q8_0 (candle has AVX kernels for Q8_0, not for
//! Q4_1), everything else is copied as is, metadata included. The Q8_0 values are the Q4_1
//! values re-encoded, so nothing is lost beyond what Q4_1 already lost.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use crate::error::Error;

/// GGUF `general.file_type` of a model that is mostly Q8_0.
const FILE_TYPE_MOSTLY_Q8_0: u32 = 7;

/// What a re-quantization changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequantizeReport {
    /// Tensors converted from Q4_1 to Q8_0.
    pub converted: usize,
    /// Tensors copied unchanged.
    pub kept: usize,
}

impl RequantizeReport {
    /// One line for manifests.
    pub fn describe(&self) -> String {
        format!(
            "re-quantized from Q4_1: {} tensors converted, {} kept",
            self.converted, self.kept
        )
    }
}

/// Writes `dst`, a copy of the GGUF `src` whose Q4_1 tensors are Q8_0.
pub fn requantize_gguf(src: &Path, dst: &Path) -> Result<RequantizeReport, Error> {
    let candle = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Candle { what, path, source }
    };
    crate::gguf::GgufHeader::read(src)?;
    let mut reader = BufReader::new(File::open(src).map_err(|e| Error::io("opening", src, e))?);
    let content = gguf_file::Content::read(&mut reader).map_err(candle("reading GGUF", src))?;
    // Keep the file's tensor order.
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    let mut report = RequantizeReport {
        converted: 0,
        kept: 0,
    };
    for name in names {
        let t = content
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(candle("reading tensor of", src))?;
        let t = if t.dtype() == GgmlDType::Q4_1 {
            report.converted += 1;
            let values = t
                .dequantize(&Device::Cpu)
                .map_err(candle("dequantizing", src))?;
            QTensor::quantize(&values, GgmlDType::Q8_0).map_err(candle("quantizing", src))?
        } else {
            report.kept += 1;
            t
        };
        tensors.push((name.as_str(), t));
    }
    let mut metadata = content.metadata.clone();
    if report.converted > 0 && metadata.contains_key("general.file_type") {
        metadata.insert(
            "general.file_type".into(),
            gguf_file::Value::U32(FILE_TYPE_MOSTLY_Q8_0),
        );
    }
    let mut keys: Vec<&String> = metadata.keys().collect();
    keys.sort();
    let metadata: Vec<(&str, &gguf_file::Value)> = keys
        .into_iter()
        .map(|k| (k.as_str(), &metadata[k]))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = BufWriter::new(File::create(dst).map_err(|e| Error::io("creating", dst, e))?);
    gguf_file::write(&mut out, &metadata, &tensor_refs).map_err(candle("writing GGUF", dst))?;
    std::io::Write::flush(&mut out).map_err(|e| Error::io("writing", dst, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn q4_1_tensors_become_q8_0_with_the_same_values() {
        let dir = std::env::temp_dir().join(format!("ets-requant-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let values: Vec<f32> = (0..2 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let x = Tensor::from_vec(values, (2, 64), &Device::Cpu).unwrap();
        let q41 = QTensor::quantize(&x, GgmlDType::Q4_1).unwrap();
        let f32t = QTensor::quantize(&x, GgmlDType::F32).unwrap();
        let name = gguf_file::Value::String("tiny".into());
        let file_type = gguf_file::Value::U32(3);
        let src = dir.join("tiny.gguf");
        let mut f = File::create(&src).unwrap();
        gguf_file::write(
            &mut f,
            &[("general.name", &name), ("general.file_type", &file_type)],
            &[("w", &q41), ("norm", &f32t)],
        )
        .unwrap();
        drop(f);
        let dst = dir.join("tiny.q8.gguf");
        let report = requantize_gguf(&src, &dst).unwrap();
        assert_eq!(
            report,
            RequantizeReport {
                converted: 1,
                kept: 1
            }
        );

        let mut r = File::open(&dst).unwrap();
        let c = gguf_file::Content::read(&mut r).unwrap();
        assert_eq!(c.metadata["general.name"].to_string().unwrap(), "tiny");
        assert_eq!(c.metadata["general.file_type"].to_u32().unwrap(), 7);
        let w = c.tensor(&mut r, "w", &Device::Cpu).unwrap();
        assert_eq!(w.dtype(), GgmlDType::Q8_0);
        let before: Vec<f32> = q41
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let after: Vec<f32> = w
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let worst = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 0.06,
            "Q8_0 re-encodes Q4_1 closely: worst error {worst}"
        );
        assert_eq!(
            c.tensor(&mut r, "norm", &Device::Cpu).unwrap().dtype(),
            GgmlDType::F32
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
