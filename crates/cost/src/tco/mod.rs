//! The TCO planner: API against self-hosted cost across volumes, over a horizon, with exact
//! break-even volumes, a sensitivity table, text and SVG output.

mod audit;
mod config;
mod plan;
mod render;

pub use audit::{parse_audit_export, traffic_from_audit, AuditUsage, DerivedTraffic};
pub use config::{ApiOption, GpuCost, Scale, SelfHostedOption, TcoConfig, Traffic, VolumeRange};
pub use plan::{
    api_monthly, api_rate, break_even, gpu_monthly, pair_break_even, plan, self_hosted_monthly, sweep, BreakEven,
    Crossing, Kind, MonthCost, MonthRow, OptionCost, OptionSummary, SensitivityRow, StepModel, TcoReport, VolumePoint,
    DAYS_PER_MONTH, HOURS_PER_MONTH,
};
pub use render::{render_svg, render_text};
