//! (in progress)
#![allow(unused)]
use crate::{Format, Report, Source};
