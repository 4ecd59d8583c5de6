//! (in progress)
#![allow(unused)]
use crate::{Format, Report, Source};
pub fn scan(source: &dyn Source) -> Report { Report::unparseable(Format::Onnx, Vec::new(), "not implemented") }
