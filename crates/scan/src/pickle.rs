//! (in progress)
#![allow(unused)]
use crate::{Format, Report, Source};
pub fn looks_like(head: &[u8]) -> bool { head.first() == Some(&0x80) }
pub fn scan_source(source: &dyn Source) -> Report { Report::unparseable(Format::Pickle, Vec::new(), "not implemented") }
