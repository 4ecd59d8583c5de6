//! (in progress)
#![allow(unused)]
use crate::{Format, Report, Source};
pub fn is_legacy(head: &[u8]) -> bool { false }
pub fn scan_zip(source: &dyn Source) -> Report { Report::unparseable(Format::PytorchZip, Vec::new(), "not implemented") }
pub fn scan_legacy(source: &dyn Source) -> Report { Report::unparseable(Format::PytorchLegacy, Vec::new(), "not implemented") }
pub fn scan_tar(source: &dyn Source) -> Report { Report::unparseable(Format::PytorchTar, Vec::new(), "not implemented") }
